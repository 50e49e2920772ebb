"""Hostile inputs, built by the tests (never committed): zip bombs, a PDF stream bomb, a YAML alias bomb."""
from __future__ import annotations

import io
import struct
import zipfile
import zlib

from tests.ingest.helpers import pdf_bytes

# 424 bytes that expand to 9**9 (387 million) strings when a YAML loader follows the aliases.
YAML_ALIAS_BOMB = """---
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
---
# Harmless looking

The body of an article whose front matter is a billion laughs.
"""


def docx_bomb(megabytes: int) -> bytes:
    """A real DOCX (made by python-docx) whose document.xml is ``megabytes`` MB of valid, highly
    compressible paragraphs: about 1 MB on disk for 340 MB of XML."""
    import docx

    base = io.BytesIO()
    document = docx.Document()
    document.add_paragraph("A document that expands.")
    document.save(base)
    source = zipfile.ZipFile(io.BytesIO(base.getvalue()))
    out = io.BytesIO()
    para = "<w:p><w:r><w:t>" + "a" * 1000 + "</w:t></w:r></w:p>"
    block = (para * 1000).encode()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            if info.filename != "word/document.xml":
                archive.writestr(info, source.read(info.filename))
                continue
            head, tail = source.read(info.filename).decode().split("<w:body>")
            with archive.open("word/document.xml", "w") as part:
                part.write((head + "<w:body>").encode())
                for _ in range(max(1, megabytes * 2**20 // len(block))):
                    part.write(block)
                part.write(tail.encode())
    return out.getvalue()


def lie_about_size(archive: bytes, member: str, declared: int) -> bytes:
    """``archive`` with ``member``'s uncompressed size declared as ``declared`` bytes (local
    header and central directory), its data unchanged: a zip bomb with a lying header."""
    data = bytearray(archive)
    name = member.encode()
    # (signature, offset of the name length, offset of the name, offset of the uncompressed size)
    for signature, length_at, name_at, size_at in ((b"PK\x03\x04", 26, 30, 22), (b"PK\x01\x02", 28, 46, 24)):
        pos = 0  # local file headers, then central directory entries
        while (pos := data.find(signature, pos)) >= 0:
            n = struct.unpack_from("<H", data, pos + length_at)[0]
            if data[pos + name_at : pos + name_at + n] == name:
                struct.pack_into("<I", data, pos + size_at, declared)
            pos += 4
    return bytes(data)


def pdf_with_stream(raw: bytes) -> bytes:
    """A one-page PDF whose content stream is ``raw`` compressed with FlateDecode."""
    packed = zlib.compress(raw, 9)
    bodies = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
           b"/Resources << /Font << /F1 5 0 R >> >> >>",
        4: b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed) + packed + b"\nendstream",
        5: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    return pdf_bytes(bodies)
