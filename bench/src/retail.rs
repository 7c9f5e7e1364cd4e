//! A small retail world shared by `cdp demo` and `cdp bench`: customers, a product catalogue, the
//! channels a brand meets them on, and the Segment messages those channels send.

use chrono::{DateTime, Utc};
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};

use cdp_domain::message::rfc3339;

/// One product of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct Product {
    pub sku: &'static str,
    pub name: &'static str,
    pub category: &'static str,
    pub price_cents: u32,
}

const fn product(
    sku: &'static str,
    name: &'static str,
    category: &'static str,
    price_cents: u32,
) -> Product {
    Product {
        sku,
        name,
        category,
        price_cents,
    }
}

/// Prices in cents (fen).
pub const CATALOG: &[Product] = &[
    product("SKU-1001", "Oolong Tea Gift Box", "tea", 16800),
    product("SKU-1002", "Jasmine Green Tea 250g", "tea", 5800),
    product("SKU-1003", "Pu-erh Cake 357g", "tea", 29800),
    product("SKU-2001", "Ceramic Tea Set", "teaware", 42900),
    product("SKU-2002", "Glass Travel Infuser", "teaware", 8900),
    product("SKU-2003", "Bamboo Tea Tray", "teaware", 23900),
    product("SKU-3001", "Moon Cake Assortment", "snacks", 12800),
    product("SKU-3002", "Dried Mango 500g", "snacks", 3990),
    product("SKU-3003", "Sesame Brittle", "snacks", 2500),
    product("SKU-4001", "Silk Scarf", "gifts", 35900),
    product("SKU-4002", "Lucky Cat Figurine", "gifts", 7900),
    product("SKU-4003", "Calligraphy Brush Set", "gifts", 19900),
];

const SURNAMES: &[&str] = &[
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun", "Ma",
    "Zhu", "Hu", "Guo", "He", "Lin", "Gao", "Luo",
];
const GIVEN_NAMES: &[&str] = &[
    "Wei", "Fang", "Na", "Min", "Jing", "Lei", "Yan", "Jie", "Tao", "Ming", "Xiu", "Hui", "Lan",
    "Qiang", "Ping", "Hong", "Yu", "Chen", "Xin", "Ying",
];
const CITIES: &[&str] = &[
    "Shanghai",
    "Beijing",
    "Hangzhou",
    "Shenzhen",
    "Guangzhou",
    "Chengdu",
    "Nanjing",
    "Wuhan",
];
const MAIL_DOMAINS: &[&str] = &["qq.com", "163.com", "126.com", "gmail.com", "outlook.com"];
/// Member tiers, lowest first.
pub const TIERS: &[&str] = &["bronze", "silver", "gold", "platinum"];
const PAGES: &[(&str, &str)] = &[
    ("Home", "/"),
    ("Tea", "/c/tea"),
    ("Teaware", "/c/teaware"),
    ("Snacks", "/c/snacks"),
    ("Gifts", "/c/gifts"),
    ("Mid-Autumn Sale", "/promo/mid-autumn"),
    ("Product", "/p"),
    ("Cart", "/cart"),
];
const STORES: &[&str] = &[
    "SH-Jingan-01",
    "SH-Xuhui-02",
    "BJ-Chaoyang-01",
    "HZ-Xihu-01",
];

/// Where a brand meets its customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Pos,
    Crm,
    OnlineShop,
    MiniProgram,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::Pos,
        Channel::Crm,
        Channel::OnlineShop,
        Channel::MiniProgram,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Pos => "pos",
            Channel::Crm => "crm",
            Channel::OnlineShop => "online_shop",
            Channel::MiniProgram => "mini_program",
        }
    }

    /// The `context` a message from this channel carries.
    fn context(self, ip: &str) -> Value {
        match self {
            Channel::Pos => json!({
                "channel": "pos",
                "library": {"name": "pos-connector", "version": "3.2.0"},
            }),
            Channel::Crm => json!({
                "channel": "crm",
                "library": {"name": "crm-sync", "version": "1.8.4"},
            }),
            Channel::OnlineShop => json!({
                "channel": "online_shop",
                "library": {"name": "analytics.js", "version": "4.1.0"},
                "ip": ip,
                "locale": "zh-CN",
                "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
            }),
            Channel::MiniProgram => json!({
                "channel": "mini_program",
                "library": {"name": "analytics-miniprogram", "version": "2.0.3"},
                "app": {"name": "Tea House mini-program", "version": "5.4.1"},
                "ip": ip,
                "locale": "zh-CN",
            }),
        }
    }
}

/// A customer as the brand's systems know them.
#[derive(Debug, Clone)]
pub struct Customer {
    /// The CRM member id, used as `userId` everywhere the customer is logged in.
    pub user_id: String,
    /// The online shop's cookie id before login.
    pub anonymous_id: String,
    pub name: String,
    pub email: String,
    /// Mainland mobile, 11 digits.
    pub phone: String,
    pub city: &'static str,
    /// Index into [`TIERS`].
    pub tier: usize,
    pub ip: String,
}

impl Customer {
    pub fn generate(rng: &mut impl Rng, index: usize) -> Self {
        let surname = SURNAMES.choose(rng).copied().unwrap_or("Wang");
        let given = GIVEN_NAMES.choose(rng).copied().unwrap_or("Wei");
        let domain = MAIL_DOMAINS.choose(rng).copied().unwrap_or("qq.com");
        let prefix = ["135", "136", "138", "139", "150", "158", "186", "188"]
            .choose(rng)
            .copied()
            .unwrap_or("138");
        Self {
            user_id: format!("M{:07}", 1_000_000 + index),
            anonymous_id: format!("anon-{:016x}", rng.gen::<u64>()),
            name: format!("{given} {surname}"),
            email: format!("{}.{}{}@{domain}", given, surname, index).to_lowercase(),
            phone: format!("{prefix}{:08}", rng.gen_range(0..100_000_000u32)),
            city: CITIES.choose(rng).copied().unwrap_or("Shanghai"),
            tier: *[0, 0, 0, 1, 1, 2, 3].choose(rng).unwrap_or(&0),
            ip: format!(
                "{}.{}.{}.{}",
                rng.gen_range(36..223),
                rng.gen_range(0..256),
                rng.gen_range(0..256),
                rng.gen_range(1..255)
            ),
        }
    }

    pub fn tier_name(&self) -> &'static str {
        TIERS[self.tier.min(TIERS.len() - 1)]
    }
}

/// A line of an order or a cart.
#[derive(Debug, Clone, Copy)]
pub struct Line {
    pub product: &'static Product,
    pub quantity: u32,
}

impl Line {
    pub fn random(rng: &mut impl Rng) -> Self {
        let product = CATALOG.choose(rng).unwrap_or(&CATALOG[0]);
        Line {
            product,
            quantity: *[1, 1, 1, 2, 2, 3].choose(rng).unwrap_or(&1),
        }
    }

    fn json(&self) -> Value {
        json!({
            "product_id": self.product.sku,
            "sku": self.product.sku,
            "name": self.product.name,
            "category": self.product.category,
            "price": money(self.product.price_cents),
            "quantity": self.quantity,
        })
    }
}

fn money(cents: u32) -> f64 {
    f64::from(cents) / 100.0
}

/// The cents of an order's lines.
pub fn revenue_cents(lines: &[Line]) -> u32 {
    lines
        .iter()
        .map(|l| l.product.price_cents * l.quantity)
        .sum()
}

/// Who a message is about: a known customer, or only a browser.
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    /// Logged in (in the online shop the cookie id comes along, as analytics.js sends it).
    User(&'a Customer),
    /// Not logged in: only the online shop's cookie id.
    Anonymous(&'a Customer),
}

impl Who<'_> {
    fn customer(&self) -> &Customer {
        match self {
            Who::User(c) | Who::Anonymous(c) => c,
        }
    }
}

fn base(kind: &str, who: Who<'_>, channel: Channel, at: DateTime<Utc>, message_id: &str) -> Value {
    let c = who.customer();
    let mut msg = json!({
        "type": kind,
        "messageId": message_id,
        "timestamp": rfc3339(at),
        "context": channel.context(&c.ip),
    });
    if let Who::User(c) = who {
        msg["userId"] = json!(c.user_id);
    }
    if matches!(who, Who::Anonymous(_)) || channel == Channel::OnlineShop {
        msg["anonymousId"] = json!(c.anonymous_id);
    }
    msg
}

/// `identify` with the customer's traits as `channel` knows them. The mini-program and the POS write the
/// phone their own way (with country code, with spaces); ingestion normalises both.
pub fn identify(c: &Customer, channel: Channel, at: DateTime<Utc>, message_id: &str) -> Value {
    let mut msg = base("identify", Who::User(c), channel, at, message_id);
    let phone = match channel {
        Channel::MiniProgram => format!("+86 {}", c.phone),
        Channel::Pos => format!("{} {} {}", &c.phone[..3], &c.phone[3..7], &c.phone[7..]),
        _ => c.phone.clone(),
    };
    let email = match channel {
        // The CRM was filled in by hand at the till long ago.
        Channel::Crm => c.email.to_uppercase(),
        _ => c.email.clone(),
    };
    msg["traits"] = json!({
        "name": c.name,
        "email": email,
        "phone": phone,
        "city": c.city,
        "member_tier": c.tier_name(),
    });
    msg
}

/// A page view in the online shop or a screen of the mini-program (sent as `page`).
pub fn page(
    who: Who<'_>,
    channel: Channel,
    at: DateTime<Utc>,
    message_id: &str,
    rng: &mut impl Rng,
) -> Value {
    let mut msg = base("page", who, channel, at, message_id);
    let (name, path) = PAGES.choose(rng).copied().unwrap_or(PAGES[0]);
    let path = if path == "/p" {
        format!(
            "/p/{}",
            CATALOG
                .choose(rng)
                .unwrap_or(&CATALOG[0])
                .sku
                .to_lowercase()
        )
    } else {
        path.to_owned()
    };
    msg["name"] = json!(name);
    msg["properties"] = json!({
        "path": path,
        "url": format!("https://shop.example.cn{path}"),
        "title": format!("{name} | Tea House"),
        "referrer": "https://www.baidu.com/",
    });
    msg
}

/// `track "Product Added"`: a line put in a cart.
pub fn product_added(
    who: Who<'_>,
    channel: Channel,
    at: DateTime<Utc>,
    message_id: &str,
    cart_id: &str,
    line: &Line,
) -> Value {
    let mut msg = base("track", who, channel, at, message_id);
    msg["event"] = json!("Product Added");
    let mut properties = line.json();
    properties["cart_id"] = json!(cart_id);
    msg["properties"] = properties;
    msg
}

/// `track "Order Completed"` with its line items.
pub fn order_completed(
    c: &Customer,
    channel: Channel,
    at: DateTime<Utc>,
    message_id: &str,
    order_id: &str,
    lines: &[Line],
) -> Value {
    let mut msg = base("track", Who::User(c), channel, at, message_id);
    msg["event"] = json!("Order Completed");
    let cents = revenue_cents(lines);
    let mut properties = json!({
        "order_id": order_id,
        "revenue": money(cents),
        "total": money(cents),
        "currency": "CNY",
        "products": lines.iter().map(Line::json).collect::<Vec<_>>(),
    });
    if channel == Channel::Pos {
        let store = STORES[order_id.bytes().map(usize::from).sum::<usize>() % STORES.len()];
        properties["store_id"] = json!(store);
    }
    msg["properties"] = properties;
    msg
}
