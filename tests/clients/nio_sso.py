"""An SSO login finished by a real Matrix client library (matrix-nio).

Usage: python nio_sso.py BASE_URL IDP_ID USER PASSWORD
Weft at BASE_URL must have the SSO provider IDP_ID (tests/run.sh starts it with
the reference OpenID Connect plugin and the test provider, tests/idp). The
browser's part (the redirect, the provider's login form, the callback) is
plain HTTP here; then nio sees `m.login.sso` and `m.login.token` in the login
flows, logs in with the flow's token (`login(token=...)`), and whoami answers.
A second use of the token is refused. Prints one line per check and a closing
`N passed, N failed` line; exits non-zero on any failure.
"""

import asyncio
import re
import sys
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import aiohttp
from nio import AsyncClient, LoginError, LoginInfoResponse, LoginResponse, WhoamiResponse

from report import check, summary

CLIENT = "http://client.invalid/app"


class Browser:
    """Follows nothing by itself and keeps cookies per host and port (Weft's
    are `Secure`, which Python's cookie jars withhold from http://127.0.0.1)."""

    def __init__(self, session):
        self.session = session
        self.jar = {}

    async def request(self, method, url, data=None):
        origin = urlsplit(url).netloc
        cookies = "; ".join(f"{k}={v}" for k, v in self.jar.get(origin, {}).items())
        headers = {"Cookie": cookies} if cookies else {}
        if data is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            data = urlencode(data)
        async with self.session.request(method, url, data=data, headers=headers, allow_redirects=False) as response:
            for value in response.headers.getall("Set-Cookie", []):
                cookie = SimpleCookie()
                cookie.load(value)
                for name, morsel in cookie.items():
                    if morsel.value and morsel["max-age"] != "0":
                        self.jar.setdefault(origin, {})[name] = morsel.value
                    else:
                        self.jar.get(origin, {}).pop(name, None)
            location = response.headers.get("Location")
            return response.status, urljoin(url, location) if location else None, await response.text()


async def sso_login_token(base, idp_id, user, password):
    async with aiohttp.ClientSession() as session:
        browser = Browser(session)
        status, to_provider, _ = await browser.request("GET", f"{base}/_matrix/client/v3/login/sso/redirect/{idp_id}?{urlencode({'redirectUrl': CLIENT})}")
        check("the redirect sends the browser to the provider", status == 302 and to_provider, status)
        status, form, _ = await browser.request("GET", to_provider)
        status, _, page = await browser.request("GET", form)
        check("the provider shows its login form", status == 200 and "<form" in page, status)
        status, resume, _ = await browser.request("POST", f"{form}/login", {"username": user, "password": password})
        status, callback, _ = await browser.request("GET", resume)
        check("the provider sends the browser back to Weft", callback and "/_synapse/client/oidc/callback" in callback, callback)
        status, to_client, page = await browser.request("GET", callback)
        check("Weft sends the browser on to the client", status == 302 and to_client and to_client.startswith(CLIENT), (status, page[:200]))
        return parse_qs(urlsplit(to_client or "").query).get("loginToken", [""])[0]


async def main(base, idp_id, user, password):
    token = await sso_login_token(base, idp_id, user, password)
    check("a login token", re.fullmatch(r"[A-Za-z0-9]{16,}", token) is not None, token)

    client = AsyncClient(base)
    info = await client.login_info()
    flows = info.flows if isinstance(info, LoginInfoResponse) else []
    check("the login flows offer m.login.sso and m.login.token", "m.login.sso" in flows and "m.login.token" in flows, info)

    login = await client.login(token=token, device_name="nio sso")
    check("nio logs in with m.login.token", isinstance(login, LoginResponse), login)
    whoami = await client.whoami()
    check("whoami answers the SSO user", isinstance(whoami, WhoamiResponse) and whoami.user_id == client.user_id, whoami)
    await client.close()

    again = AsyncClient(base)
    reused = await again.login(token=token)
    check("the token is single use", isinstance(reused, LoginError) and reused.status_code == "M_FORBIDDEN", reused)
    await again.close()
    return summary("matrix-nio sso")


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main(*sys.argv[1:5])) else 1)
