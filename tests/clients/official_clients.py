"""Sends events to a running cdp with the official Segment and RudderStack Python libraries, unchanged
except for the host, then checks through the query API that cdp stored and projected every one.

Usage: CDP_URL=http://127.0.0.1:8080 CDP_WRITE_KEY=... CDP_TOKEN=... python3 official_clients.py
"""
import json
import os
import sys
import time
import urllib.parse
import urllib.request
import uuid

URL = os.environ["CDP_URL"]
WRITE_KEY = os.environ["CDP_WRITE_KEY"]
TOKEN = os.environ["CDP_TOKEN"]
errors = []


def on_error(error, items):
    errors.append(f"{error!r} for {len(items)} items")


def send_all(client, user, anon):
    # A till's junk phone: stored, kept as an invalid trait, no identifier, and still a 200 (no error).
    client.identify(user, {"email": f"{user}@Example.com", "name": "Ann", "plan": "gold", "phone": "N/A"})
    client.track(user, "Order Completed", {"order_id": "o-1", "revenue": 99.5})
    client.page(user, "Docs", "Home", {"url": "https://shop.example/docs"})
    client.screen(user, "App", "Cart", {})
    client.group(user, "company-1", {"name": "ACME"})
    client.alias(anon, user)
    client.track(anonymous_id=anon, event="Product Viewed", properties={"sku": "X1"})
    client.flush()


def lookup(id_type, value):
    query = urllib.parse.urlencode({"type": id_type, "value": value})
    request = urllib.request.Request(
        f"{URL}/v1/profiles/lookup?{query}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def wait_for(id_type, value, expected_counts):
    deadline = time.time() + 20
    view = None
    while time.time() < deadline:
        view = lookup(id_type, value)
        if view and view["event_counts"]["by_type"] == expected_counts:
            return view
        time.sleep(0.2)
    sys.exit(f"FAIL: {id_type}={value}: expected counts {expected_counts}, got {view and view['event_counts']}")


def main():
    from segment import analytics as segment
    import rudderstack.analytics as rudder

    segment.write_key = WRITE_KEY
    segment.host = URL
    segment.on_error = on_error
    segment.gzip = True
    rudder.write_key = WRITE_KEY
    rudder.dataPlaneUrl = URL
    rudder.on_error = on_error

    # The alias joins the anonymous id to the user (OneID), so all 7 calls land on one profile.
    expected = {"identify": 1, "track": 2, "page": 1, "screen": 1, "group": 1, "alias": 1}
    for name, client in (("segment", segment), ("rudderstack", rudder)):
        user, anon = f"{name}-{uuid.uuid4().hex[:8]}", f"anon-{uuid.uuid4().hex[:8]}"
        send_all(client, user, anon)
        if errors:
            sys.exit(f"FAIL: {name} library reported errors: {errors}")
        view = wait_for("user_id", user, expected)
        assert view["traits"]["email"]["value"] == f"{user}@example.com", view["traits"]
        assert view["traits"]["phone"] == {**view["traits"]["phone"], "value": "N/A", "invalid": "not_a_phone"}, view["traits"]
        assert all(i["type"] != "phone" for i in view["identifiers"]), view["identifiers"]
        for id_type, value in (("anonymous_id", anon), ("email", f"{user.upper()}@EXAMPLE.COM")):
            other = wait_for(id_type, value, expected)
            if other["profile_id"] != view["profile_id"]:
                sys.exit(f"FAIL: {id_type}={value} is on {other['profile_id']}, not {view['profile_id']}")
        print(f"ok: the official {name} library's 7 calls were stored and joined into one profile")
    print("2 passed, 0 failed")


if __name__ == "__main__":
    main()
