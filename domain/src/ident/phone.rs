//! Phone numbers: ingestion's strict reading in a region's numbering plan ([`Phone::parse_in`], E.164,
//! placeholders refused) and the lenient [`Phone::parse`] the identity rules apply to stored values.

use super::{IdentError, InvalidIdentifier};

/// A phone number as digits with the country code. Numbers written with `+` or `00` keep their country
/// code; an 11-digit number starting with `1` is a mainland China mobile and gets `86`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone(pub(super) String);

impl Phone {
    /// A phone number as ingestion reads it in a workspace of `region`: a number with `+` or `00` keeps
    /// its country code (and a `+86` number must be a mainland one); any other is read in the region's
    /// numbering plan. Placeholders are refused. The value is the country code and the national number
    /// as digits (`8613800138000`); [`Phone::e164`] writes it with `+`.
    pub fn parse_in(raw: &str, region: PhoneRegion) -> Result<Self, InvalidIdentifier> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(InvalidIdentifier::new(
                "not_a_phone",
                "an empty phone number",
            ));
        }
        // `+86 …` and `(+86) …` alike.
        let plus = trimmed.trim_start_matches('(').starts_with('+');
        let body = if plus {
            trimmed.replacen('+', "", 1)
        } else {
            trimmed.to_owned()
        };
        if body
            .chars()
            .any(|c| !(c.is_ascii_digit() || " -().".contains(c)))
        {
            return Err(InvalidIdentifier::new(
                "not_a_phone",
                "not a phone number: only digits, a leading +, spaces, -, (, ) and . are allowed",
            ));
        }
        let digits: String = body.chars().filter(char::is_ascii_digit).collect();
        if digits.is_empty() {
            return Err(InvalidIdentifier::new(
                "not_a_phone",
                "a phone number without digits",
            ));
        }
        refuse_placeholder(&digits)?;
        let international = if plus {
            Some(digits.as_str())
        } else {
            digits
                .strip_prefix("00")
                .filter(|_| trimmed.trim_start_matches('(').starts_with("00"))
        };
        let normalised = match international {
            Some(e164) => {
                if e164.starts_with('0') || !(7..=15).contains(&e164.len()) {
                    return Err(InvalidIdentifier::new(
                        "invalid_number",
                        "an international number needs a country code and 7-15 digits in all",
                    ));
                }
                let plan_of = PhoneRegion::ALL
                    .into_iter()
                    .find(|r| e164.starts_with(r.plan().country_code));
                match plan_of {
                    Some(PhoneRegion::Cn) => match china_significant_without_trunk(&e164[2..]) {
                        Some(nsn) => china(&format!("86{nsn}"))?,
                        None => return Err(InvalidIdentifier::new(
                            "invalid_number",
                            "+86 is not followed by a mainland mobile, landline or service number",
                        )),
                    },
                    // A country whose plan is known is held to it, as its national numbers are, so that
                    // a number reads back the same however it was written.
                    Some(known) => {
                        let plan = known.plan();
                        let nsn = &e164[plan.country_code.len()..];
                        if !plan.lengths.contains(&nsn.len()) {
                            return Err(InvalidIdentifier::new(
                                "invalid_number",
                                format!(
                                    "not a phone number of +{} (region {})",
                                    plan.country_code,
                                    known.as_str()
                                ),
                            ));
                        }
                        refuse_placeholder(nsn)?;
                        e164.to_owned()
                    }
                    None => {
                        // Whatever the country code's length (1-3 digits), the rest must not be a placeholder.
                        for cc in 1..=3.min(e164.len() - 1) {
                            let rest = &e164[cc..];
                            if rest.len() >= 6 {
                                refuse_placeholder(rest)?;
                            }
                        }
                        e164.to_owned()
                    }
                }
            }
            None => region.national(&digits)?,
        };
        Ok(Self(normalised))
    }

    /// The number in E.164 form: `+` and the digits.
    pub fn e164(&self) -> String {
        format!("+{}", self.0)
    }

    /// The lenient reading the identity rules apply to stored values (`IdentityRules::normalise`): any
    /// 6-15 digits; a number with `+` or `00` keeps its country code, and an 11-digit number starting
    /// with `1` gets `86`. Ingestion stores phones as `+` and digits ([`Phone::e164`]), which this reads
    /// back unchanged, so the rules and the events already stored agree whatever the region.
    pub fn parse(raw: &str) -> Result<Self, IdentError> {
        let trimmed = raw.trim();
        let international = trimmed.starts_with('+') || trimmed.starts_with("00");
        if trimmed
            .chars()
            .any(|c| !(c.is_ascii_digit() || " +-().".contains(c)))
        {
            return Err(IdentError(format!("{raw:?} is not a phone number")));
        }
        let mut digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
        if trimmed.starts_with("00") {
            digits.drain(..2);
        }
        if !international && digits.len() == 11 && digits.starts_with('1') {
            digits.insert_str(0, "86");
        }
        if (6..=15).contains(&digits.len()) {
            Ok(Self(digits))
        } else {
            Err(IdentError(format!(
                "{raw:?} is not a phone number (6-15 digits expected)"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// The region a phone number written without its country code is read in: a workspace's
/// `[workspace.identity] phone_region`, mainland China (`CN`) by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PhoneRegion {
    /// Mainland China: mobiles `1[3-9]` + 9 digits; landlines `0` + a 2- or 3-digit area code + a local
    /// number of 7–8 digits; `400` / `800` service numbers.
    #[default]
    Cn,
    Hk,
    Mo,
    Tw,
    Sg,
    /// The North American Numbering Plan (the United States and Canada).
    Us,
    Gb,
    Jp,
    Kr,
}

/// How a region other than `CN` writes its national numbers: the country code, the trunk prefix dialled
/// before a national number (none in Hong Kong, Macau and Singapore) and the length of the national
/// significant number.
struct NationalPlan {
    country_code: &'static str,
    trunk: Option<char>,
    lengths: std::ops::RangeInclusive<usize>,
}

impl PhoneRegion {
    pub const ALL: [PhoneRegion; 9] = [
        PhoneRegion::Cn,
        PhoneRegion::Hk,
        PhoneRegion::Mo,
        PhoneRegion::Tw,
        PhoneRegion::Sg,
        PhoneRegion::Us,
        PhoneRegion::Gb,
        PhoneRegion::Jp,
        PhoneRegion::Kr,
    ];

    /// An ISO 3166 code (`"CN"`, `"hk"`, …); `CA` is read as the shared North American plan.
    pub fn parse(raw: &str) -> Result<Self, IdentError> {
        let code = raw.trim().to_ascii_uppercase();
        if code == "CA" {
            return Ok(PhoneRegion::Us);
        }
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == code)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|r| r.as_str()).collect();
                IdentError(format!(
                    "unknown phone region {raw:?}; expected one of {}",
                    known.join(", ")
                ))
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PhoneRegion::Cn => "CN",
            PhoneRegion::Hk => "HK",
            PhoneRegion::Mo => "MO",
            PhoneRegion::Tw => "TW",
            PhoneRegion::Sg => "SG",
            PhoneRegion::Us => "US",
            PhoneRegion::Gb => "GB",
            PhoneRegion::Jp => "JP",
            PhoneRegion::Kr => "KR",
        }
    }

    fn plan(self) -> NationalPlan {
        let (country_code, trunk, lengths) = match self {
            PhoneRegion::Cn => ("86", Some('0'), 10..=11),
            PhoneRegion::Hk => ("852", None, 8..=8),
            PhoneRegion::Mo => ("853", None, 8..=8),
            PhoneRegion::Tw => ("886", Some('0'), 8..=9),
            PhoneRegion::Sg => ("65", None, 8..=8),
            PhoneRegion::Us => ("1", Some('1'), 10..=10),
            PhoneRegion::Gb => ("44", Some('0'), 9..=10),
            PhoneRegion::Jp => ("81", Some('0'), 9..=10),
            PhoneRegion::Kr => ("82", Some('0'), 8..=10),
        };
        NationalPlan {
            country_code,
            trunk,
            lengths,
        }
    }

    /// The country code followed by the national significant number of `digits`, a number written
    /// without its country code (perhaps with the trunk prefix) or with it but without `+`.
    fn national(self, digits: &str) -> Result<String, InvalidIdentifier> {
        if self == PhoneRegion::Cn {
            return china(digits);
        }
        let plan = self.plan();
        let nsn = match plan.trunk {
            Some(trunk)
                if digits.starts_with(trunk) && plan.lengths.contains(&(digits.len() - 1)) =>
            {
                &digits[1..]
            }
            _ if plan.lengths.contains(&digits.len()) && !digits.starts_with(['0', '1']) => digits,
            _ => match digits.strip_prefix(plan.country_code) {
                Some(rest) if plan.lengths.contains(&rest.len()) => rest,
                _ => {
                    return Err(InvalidIdentifier::new(
                        "invalid_number",
                        format!("not a phone number of region {}", self.as_str()),
                    ))
                }
            },
        };
        refuse_placeholder(nsn)?;
        Ok(format!("{}{nsn}", plan.country_code))
    }
}

/// Mainland China's numbering plan, for a number written without `+86` (or with `86` but no `+`).
/// Answers `86` followed by the national significant number.
fn china(digits: &str) -> Result<String, InvalidIdentifier> {
    let nsn = china_significant(digits).or_else(|| {
        digits
            .strip_prefix("86")
            .and_then(china_significant_without_trunk)
    });
    if let Some(nsn) = nsn {
        refuse_placeholder(nsn)?;
        if is_china_mobile(nsn) {
            refuse_placeholder(&nsn[3..])?;
        } else if !is_china_service(nsn) {
            refuse_placeholder(&nsn[china_area_code_length(nsn)..])?;
        }
        return Ok(format!("86{nsn}"));
    }
    if (7..=8).contains(&digits.len()) {
        return Err(InvalidIdentifier::new(
            "no_area_code",
            "a local number without its area code (write it as 0 + area code + number, e.g. 010 6552 9988)",
        ));
    }
    Err(InvalidIdentifier::new(
        "invalid_number",
        "not a mainland China mobile (1[3-9] + 9 digits), landline (0 + area code + number) or service number, and not written with + and a country code",
    ))
}

/// The national significant number of a mainland number as written at home: a mobile, a landline with
/// its trunk `0`, or a `400`/`800` service number.
fn china_significant(digits: &str) -> Option<&str> {
    if is_china_mobile(digits) || is_china_service(digits) {
        return Some(digits);
    }
    digits
        .strip_prefix('0')
        .filter(|rest| is_china_landline(rest))
}

/// The same after `86`: no trunk prefix.
fn china_significant_without_trunk(rest: &str) -> Option<&str> {
    (is_china_mobile(rest) || is_china_service(rest) || is_china_landline(rest)).then_some(rest)
}

fn is_china_mobile(digits: &str) -> bool {
    let b = digits.as_bytes();
    b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1])
}

fn is_china_service(digits: &str) -> bool {
    digits.len() == 10 && (digits.starts_with("400") || digits.starts_with("800"))
}

/// An area code and a local number, without the trunk `0`: Beijing `10` and the `2x` cities have
/// 2-digit codes and 8-digit numbers, the rest 3-digit codes and 7- or 8-digit numbers; a local number
/// never starts with `0` or `1`.
fn is_china_landline(rest: &str) -> bool {
    let area = china_area_code_length(rest);
    if area == 0 {
        return false;
    }
    let local = &rest[area.min(rest.len())..];
    let lengths = if area == 2 { 8..=8 } else { 7..=8 };
    lengths.contains(&local.len()) && !local.starts_with(['0', '1'])
}

/// 2 for Beijing (`10`) and the `2x` cities, 3 for the other area codes, 0 for no area code.
fn china_area_code_length(rest: &str) -> usize {
    if rest.starts_with("10") || rest.starts_with('2') {
        2
    } else if rest.starts_with(['3', '4', '5', '6', '7', '8', '9']) {
        3
    } else {
        0
    }
}

/// The placeholders tills and CRM forms are filled with: a number made of one digit repeated
/// (`0000000`, `11111111111`), or a straight run up or down (`1234567`, `87654321`) of 6 digits or more.
/// For mainland mobiles it is applied to the 8 digits after the 3-digit prefix too, which catches the
/// test numbers `13800000000`, `13911111111` and `13812345678`.
fn refuse_placeholder(digits: &str) -> Result<(), InvalidIdentifier> {
    let b = digits.as_bytes();
    let repeated = b.windows(2).all(|w| w[0] == w[1]);
    let step = |up: bool| {
        b.windows(2).all(|w| {
            let (a, c) = (w[0] - b'0', w[1] - b'0');
            if up {
                c == (a + 1) % 10
            } else {
                a == (c + 1) % 10
            }
        })
    };
    let run = b.len() >= 6 && (step(true) || step(false));
    if !b.is_empty() && (repeated || run) {
        return Err(InvalidIdentifier::new(
            "placeholder",
            "a placeholder, not a customer's number (one digit repeated, a straight run, or a listed test number)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_become_digits_with_country_code() {
        assert_eq!(
            Phone::parse("138 0013 8000").unwrap().as_str(),
            "8613800138000"
        );
        assert_eq!(
            Phone::parse("+86 138-0013-8000").unwrap().as_str(),
            "8613800138000"
        );
        assert_eq!(
            Phone::parse("0044 20 7946 0958").unwrap().as_str(),
            "442079460958"
        );
        assert!(Phone::parse("call me").is_err());
        assert!(Phone::parse("12").is_err());
    }

    fn cn(raw: &str) -> Result<String, &'static str> {
        Phone::parse_in(raw, PhoneRegion::Cn)
            .map(|p| p.as_str().to_owned())
            .map_err(|e| e.code)
    }

    #[test]
    fn mainland_mobiles_get_86_however_they_are_written() {
        for raw in [
            "13800138000",
            "138 0013 8000",
            "138-0013-8000",
            "+86 138 0013 8000",
            "+8613800138000",
            "0086 13800138000",
            "8613800138000",
            "(+86) 138.0013.8000",
        ] {
            assert_eq!(cn(raw), Ok("8613800138000".into()), "{raw:?}");
        }
        assert_eq!(
            Phone::parse_in("13800138000", PhoneRegion::Cn)
                .unwrap()
                .e164(),
            "+8613800138000"
        );
    }

    #[test]
    fn landlines_need_their_area_code() {
        // Beijing (10) and the 2x cities: 2-digit codes, 8-digit numbers; others 3-digit codes.
        assert_eq!(cn("010 6552 9988"), Ok("861065529988".into()));
        assert_eq!(cn("(021) 6321-1234"), Ok("862163211234".into()));
        assert_eq!(cn("0571-8702 3456"), Ok("8657187023456".into()));
        assert_eq!(cn("0755 2614567"), Ok("867552614567".into()));
        assert_eq!(cn("+86 10 6552 9988"), Ok("861065529988".into()));
        assert_eq!(cn("400 810 8888"), Ok("864008108888".into()));
        // Without the area code a landline is anybody's.
        assert_eq!(cn("6552 9988"), Err("no_area_code"));
        assert_eq!(cn("2614567"), Err("no_area_code"));
        // A local number never starts with 0 or 1; +86 must be followed by a mainland number.
        assert_eq!(cn("010 1552 9988"), Err("invalid_number"));
        assert_eq!(cn("+86 12345"), Err("invalid_number"));
        assert_eq!(cn("12012345678"), Err("invalid_number"));
    }

    #[test]
    fn international_numbers_keep_their_country_code() {
        assert_eq!(cn("+44 20 7946 0958"), Ok("442079460958".into()));
        assert_eq!(cn("0044 20 7946 0958"), Ok("442079460958".into()));
        assert_eq!(cn("+1 (415) 555-0100"), Ok("14155550100".into()));
        assert_eq!(cn("+852 6552 9988"), Ok("85265529988".into()));
        assert_eq!(cn("+0 138 0013"), Err("invalid_number"));
        assert_eq!(cn("+12"), Err("invalid_number"));
        assert_eq!(cn("+1234567890123456"), Err("placeholder"));
        assert_eq!(cn("+4412345678901234"), Err("invalid_number"));
    }

    #[test]
    fn placeholders_are_refused() {
        for raw in [
            "0000000",
            "00000000000",
            "11111111111",
            "8888-8888",
            "13800000000",
            "+86 139 1111 1111",
            "13812345678",
            "18687654321",
            "12345678901",
            "1234567",
            "010 8888 8888",
            "+44 0000000000",
            "+1 555 555 5555",
        ] {
            assert_eq!(cn(raw), Err("placeholder"), "{raw:?}");
        }
        // A real number with a repeated digit or two is no placeholder.
        assert_eq!(cn("13800138000"), Ok("8613800138000".into()));
        assert_eq!(cn("13888888880"), Ok("8613888888880".into()));
    }

    #[test]
    fn words_and_junk_are_not_phones() {
        for raw in [
            "N/A",
            "n/a",
            "none",
            "call me",
            "138 0013 8000 ext 2",
            "",
            "  ",
            "+",
            "--",
            "١٣٨",
        ] {
            assert_eq!(cn(raw), Err("not_a_phone"), "{raw:?}");
        }
    }

    #[test]
    fn other_regions_read_national_numbers_in_their_plan() {
        let read = |raw: &str, region: &str| {
            Phone::parse_in(raw, PhoneRegion::parse(region).unwrap())
                .map(|p| p.as_str().to_owned())
                .map_err(|e| e.code)
        };
        assert_eq!(read("6552 9988", "HK"), Ok("85265529988".into()));
        assert_eq!(read("(415) 555-0100", "US"), Ok("14155550100".into()));
        assert_eq!(read("1 415 555 0100", "us"), Ok("14155550100".into()));
        assert_eq!(read("020 7946 0958", "GB"), Ok("442079460958".into()));
        assert_eq!(read("0912 345 678", "TW"), Ok("886912345678".into()));
        assert_eq!(read("13800138000", "HK"), Err("invalid_number"));
        // With + the region does not matter.
        assert_eq!(read("+86 138 0013 8000", "US"), Ok("8613800138000".into()));
        assert_eq!(PhoneRegion::parse("CA"), Ok(PhoneRegion::Us));
        assert!(PhoneRegion::parse("XX").is_err());
        assert_eq!(PhoneRegion::default().as_str(), "CN");
    }

    proptest::proptest! {
        /// Any text at all: a phone or a refusal with a code, never a panic; an accepted number reads
        /// back the same in E.164 (strictly and by the rules' lenient reading), in every region.
        #[test]
        fn the_phone_parser_never_panics_and_its_output_reads_back(
            raw in proptest::prop_oneof![
                ".{0,24}",
                "[+0-9 ()./-]{0,24}",
                "(\\+|00)?(86)?1[3-9][0-9]{9}",
                "0[1-9][0-9]{8,10}",
            ],
            region in 0..PhoneRegion::ALL.len(),
        ) {
            let region = PhoneRegion::ALL[region];
            match Phone::parse_in(&raw, region) {
                Ok(phone) => {
                    proptest::prop_assert!(phone.as_str().bytes().all(|b| b.is_ascii_digit()));
                    let again = Phone::parse_in(&phone.e164(), region).unwrap();
                    proptest::prop_assert_eq!(&again, &phone);
                    proptest::prop_assert_eq!(Phone::parse(&phone.e164()).unwrap(), phone);
                }
                Err(e) => proptest::prop_assert!(!e.code.is_empty() && !e.reason.is_empty()),
            }
        }
    }
}
