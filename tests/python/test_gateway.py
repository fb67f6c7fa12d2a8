"""The gateway's HTTP API, from Python's standard library: docs/HTTP.md
followed by a client that is not Rust, against a running `ordersaga run`.

    python tests/python/test_gateway.py GATEWAY_URL --admin-email EMAIL --admin-password PASSWORD

It registers a user, logs in, deposits, has the administrator add a product,
places an order that waits for its saga and is confirmed, reads the account
and the user's orders back (the list with read-your-writes), replays an
Idempotency-Key, and checks the errors: 401 without a token, 400 for an
unknown field, 403 for a customer adding a product, each an
application/problem+json body with a stable code. Prints each failed check,
then `gateway: N passed, M failed`; exits 0 when all passed, 1 otherwise.
"""
import argparse
import json
import sys
import urllib.error
import urllib.request
import uuid


class Api:
    """JSON over HTTP with an optional bearer token."""

    def __init__(self, base, timeout):
        self.base = base.rstrip("/")
        self.timeout = timeout

    def call(self, method, path, body=None, token=None, headers=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, dict(response.headers), json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw.decode(errors="replace")
            return error.code, dict(error.headers), payload


class Checks:
    def __init__(self):
        self.results = []

    def check(self, ok, what, detail=""):
        self.results.append(bool(ok))
        if not ok:
            print(f"FAIL {what}" + (f": {detail}" if detail else ""), flush=True)
        return ok

    def status(self, got, want, what):
        status, _, body = got
        return self.check(status == want, what, f"status {status}, want {want}: {body}")


def lower(headers):
    return {k.lower(): v for k, v in headers.items()}


def main():
    parser = argparse.ArgumentParser(description="the gateway's HTTP API, checked from Python")
    parser.add_argument("gateway", help="the gateway's base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--admin-email", required=True)
    parser.add_argument("--admin-password", required=True)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    args = parser.parse_args()
    api, checks = Api(args.gateway, args.timeout), Checks()

    email = f"{uuid.uuid4().hex}@python.test"
    password = "a long python password"
    got = api.call("POST", "/users", {"email": email, "username": "py", "password": password})
    checks.status(got, 201, "POST /users registers")
    checks.check(lower(got[1]).get("location") == "/users/me", "registration points at /users/me", got[1])

    got = api.call("POST", "/auth/token", {"email": email, "password": password})
    checks.status(got, 200, "POST /auth/token logs in")
    token = got[2].get("access_token") if isinstance(got[2], dict) else None
    checks.check(got[2].get("token_type") == "Bearer", "the token is a bearer token", got[2])
    checks.check(password not in json.dumps(got[2]), "the login answer carries no password")

    got = api.call("POST", "/auth/token", {"email": args.admin_email, "password": args.admin_password})
    checks.status(got, 200, "the administrator logs in")
    admin = got[2].get("access_token") if isinstance(got[2], dict) else None
    checks.check("admin" in got[2].get("roles", []), "the administrator has the admin role", got[2])

    got = api.call(
        "POST",
        "/products",
        {"sku": f"PY-{uuid.uuid4().hex[:6]}", "name": "Python widget", "unit_price": 1500, "stock": 4},
        token=admin,
    )
    checks.status(got, 201, "the administrator adds a product")
    product = got[2].get("product_id") if isinstance(got[2], dict) else None

    key = {"Idempotency-Key": f"py-{uuid.uuid4()}"}
    first = api.call("POST", "/users/me/deposits", {"amount": 5000}, token=token, headers=key)
    again = api.call("POST", "/users/me/deposits", {"amount": 5000}, token=token, headers=key)
    checks.status(first, 200, "a deposit is applied")
    checks.check(
        first[2].get("position") == again[2].get("position"),
        "a replayed Idempotency-Key answers the same write",
        f"{first[2]} / {again[2]}",
    )

    got = api.call(
        "POST", "/orders?wait=30s", {"lines": [{"product_id": product, "quantity": 2}]}, token=token
    )
    checks.status(got, 200, "an order settles within the wait")
    order = got[2] if isinstance(got[2], dict) else {}
    checks.check(order.get("status") == "confirmed", "the order is confirmed", order)
    checks.check(order.get("total") == 3000, "the order is priced from the product", order)
    position = lower(got[1]).get("ordersaga-position", "")

    got = api.call("GET", "/users/me", token=token)
    checks.status(got, 200, "GET /users/me")
    checks.check(got[2].get("balance") == 2000, "deposited once and charged once", got[2])

    got = api.call("GET", "/users/me/orders", token=token, headers={"Ordersaga-Min-Position": position})
    checks.status(got, 200, "GET /users/me/orders")
    items = got[2].get("items", []) if isinstance(got[2], dict) else []
    checks.check(
        any(i.get("order_id") == order.get("order_id") for i in items),
        "the list shows the order (read-your-writes)",
        got[2],
    )

    for what, got, status, code in [
        ("no token", api.call("GET", "/users/me"), 401, "missing_token"),
        (
            "an unknown field",
            api.call("POST", "/users/me/deposits", {"amount": 1, "currency": "EUR"}, token=token),
            400,
            "invalid_body",
        ),
        (
            "a customer adding a product",
            api.call("POST", "/products", {"sku": "X", "name": "x", "unit_price": 1, "stock": 1}, token=token),
            403,
            "forbidden",
        ),
    ]:
        checks.status(got, status, f"{what} is a {status}")
        checks.check(
            lower(got[1]).get("content-type", "").startswith("application/problem+json"),
            f"{what}: a problem+json body",
            got[1],
        )
        checks.check(isinstance(got[2], dict) and got[2].get("code") == code, f"{what}: code {code}", got[2])

    got = api.call("GET", "/openapi.json")
    checks.status(got, 200, "GET /openapi.json")
    paths = got[2].get("paths", {}) if isinstance(got[2], dict) else {}
    checks.check("/orders" in paths and "/auth/token" in paths, "the OpenAPI document lists the routes", list(paths))

    passed = sum(checks.results)
    failed = len(checks.results) - passed
    print(f"gateway: {passed} passed, {failed} failed", flush=True)
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
