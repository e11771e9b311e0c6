"""Accounts through a real Matrix client library (matrix-nio) against a running Weft.

Usage: python nio_accounts.py BASE_URL
Registers, logs in and out, lists and renames devices, and checks the errors a
client sees for a wrong password and a taken user name. Prints one line per
check and a closing `N passed, N failed` line; exits non-zero on any failure.
"""

import asyncio
import secrets
import sys

from nio.responses import ErrorResponse
from nio import (
    AsyncClient,
    DevicesResponse,
    LoginError,
    LoginResponse,
    LogoutResponse,
    RegisterResponse,
    UpdateDeviceResponse,
)

from report import check, summary


async def main(base):
    name = "nio" + secrets.token_hex(4)
    password = secrets.token_urlsafe(12)

    client = AsyncClient(base, name)
    registered = await client.register(name, password, device_name="nio test")
    check("register", isinstance(registered, RegisterResponse), registered)
    check("register gives the user id", getattr(registered, "user_id", "").startswith(f"@{name}:"), registered)

    await client.close()

    # A new client: a user's access token on /register is read as an
    # appservice's token and refused (M_UNKNOWN_TOKEN), as Synapse does.
    client = AsyncClient(base, name)
    again = await client.register(name, password)
    check("a taken name is refused", isinstance(again, ErrorResponse) and again.status_code == "M_USER_IN_USE", again)
    await client.close()

    client = AsyncClient(base, name)
    wrong = await client.login("not the password")
    check("a wrong password is refused", isinstance(wrong, LoginError) and wrong.status_code == "M_FORBIDDEN", wrong)
    login = await client.login(password, device_name="second device")
    check("login", isinstance(login, LoginResponse), login)

    devices = await client.devices()
    check("devices lists both devices", isinstance(devices, DevicesResponse) and len(devices.devices) == 2, devices)
    renamed = await client.update_device(login.device_id, {"display_name": "renamed"})
    check("rename a device", isinstance(renamed, UpdateDeviceResponse), renamed)
    devices = await client.devices()
    names = {d.id: d.display_name for d in getattr(devices, "devices", [])}
    check("the new name is listed", names.get(login.device_id) == "renamed", names)

    logout = await client.logout()
    check("logout", isinstance(logout, LogoutResponse), logout)
    await client.close()

    return summary("matrix-nio")


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main(sys.argv[1])) else 1)
