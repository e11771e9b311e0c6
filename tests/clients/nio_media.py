"""Media through a real Matrix client library (matrix-nio) against a running Weft.

Usage: python nio_media.py BASE_URL
Uploads a picture and a text file, downloads both back (nio uses the
authenticated media endpoints), asks for a thumbnail, and sets the picture as
the avatar. Prints one line per check and a closing `N passed, N failed` line;
exits non-zero on any failure.
"""

import asyncio
import io
import secrets
import struct
import sys
import zlib

from nio import (
    AsyncClient,
    DownloadError,
    MemoryDownloadResponse,
    ProfileSetAvatarResponse,
    RegisterResponse,
    ResizingMethod,
    ThumbnailResponse,
    UploadResponse,
)

from report import check, summary


def png(width, height):
    """A width x height RGB gradient as PNG bytes, made without an image library."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + bytes(v for x in range(width) for v in (x % 256, y % 256, 128)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


async def main(base):
    name = "niomedia" + secrets.token_hex(4)
    client = AsyncClient(base, name)
    registered = await client.register(name, secrets.token_urlsafe(12), device_name="nio media")
    check("register", isinstance(registered, RegisterResponse), registered)

    picture = png(200, 100)
    uploaded, _ = await client.upload(io.BytesIO(picture), content_type="image/png", filename="cat.png", filesize=len(picture))
    check("upload a picture", isinstance(uploaded, UploadResponse) and uploaded.content_uri.startswith("mxc://"), uploaded)
    mxc = getattr(uploaded, "content_uri", "mxc://none/none")

    downloaded = await client.download(mxc)
    check("download it back", isinstance(downloaded, MemoryDownloadResponse) and downloaded.body == picture, downloaded)
    check("its type and name", getattr(downloaded, "content_type", None) == "image/png" and getattr(downloaded, "filename", None) == "cat.png", downloaded)

    server_name, media_id = mxc[len("mxc://"):].split("/", 1)
    thumbnail = await client.thumbnail(server_name, media_id, 32, 32, ResizingMethod.crop)
    check("a thumbnail", isinstance(thumbnail, ThumbnailResponse) and thumbnail.content_type == "image/png" and thumbnail.body.startswith(b"\x89PNG"), thumbnail)

    avatar = await client.set_avatar(mxc)
    check("set it as the avatar", isinstance(avatar, ProfileSetAvatarResponse), avatar)
    profile = await client.get_avatar()
    check("the avatar is the upload", getattr(profile, "avatar_url", None) == mxc, profile)

    text = "héllo from nio\n".encode()
    uploaded, _ = await client.upload(io.BytesIO(text), content_type="text/plain", filename="note.txt", filesize=len(text))
    check("upload a text file", isinstance(uploaded, UploadResponse), uploaded)
    downloaded = await client.download(getattr(uploaded, "content_uri", mxc))
    check("download the text", isinstance(downloaded, MemoryDownloadResponse) and downloaded.body == text, downloaded)

    missing = await client.download(f"mxc://{server_name}/AAAAAAAAAAAAAAAAAAAAAAAA")
    check("a missing file is an error", isinstance(missing, DownloadError) and missing.status_code == "M_NOT_FOUND", missing)
    await client.close()
    return summary("matrix-nio media")


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main(sys.argv[1])) else 1)
