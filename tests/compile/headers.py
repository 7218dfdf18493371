#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Lists every header under include/sandbox with the heavy libraries it may use, one per line:
# "sandbox/x.hpp core", "sandbox/transport/http/codec.hpp simdjson", "... httplib,simdjson".
# A header may need simdjson or cpp-httplib only inside the HTTP part of the tree, and grpc++ only
# in the gRPC headers (STYLE: heavy dependencies confined); anything else is listed as core, and
# its compile test then fails if it pulls one in after all.
import os
import re
import sys

root = sys.argv[1]
http_area = ("sandbox/http.hpp", "sandbox/sandbox.hpp", "sandbox/server.hpp", "sandbox/server/",
             "sandbox/transport/http/")
grpc_area = ("sandbox/server/grpc_server.hpp", "sandbox/server/detail/grpc_wire.hpp",
             "sandbox/grpc.hpp", "sandbox/transport/grpc/")
# Container images: libarchive and libcrypto besides the HTTP stack (the options and the
# reference parser are core: the local transport holds them).
image_area = ("sandbox/image.hpp", "sandbox/image/store.hpp", "sandbox/image/detail/")
heavy = {"simdjson.h": "simdjson", "httplib.h": "httplib", "grpcpp/grpcpp.h": "grpc",
         "archive.h": "archive", "openssl/evp.h": "crypto"}

headers = []
for d, _, files in os.walk(os.path.join(root, "sandbox")):
    headers += [os.path.relpath(os.path.join(d, f), root) for f in files if f.endswith(".hpp")]
headers.sort()
includes = {}
for h in headers:
    with open(os.path.join(root, h)) as f:
        includes[h] = re.findall(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', f.read(), re.M)


def needs(h, seen):
    out = set()
    for i in includes.get(h, []):
        if i in heavy:
            out.add(heavy[i])
        elif i in includes and i not in seen:
            seen.add(i)
            out |= needs(i, seen)
    return out


for h in headers:
    n = needs(h, set()) if h.startswith(http_area + grpc_area + image_area) else set()
    if not h.startswith(grpc_area):
        n.discard("grpc")
    if not h.startswith(image_area):
        n -= {"archive", "crypto"}
    print(h, ",".join(sorted(n)) or "core")
