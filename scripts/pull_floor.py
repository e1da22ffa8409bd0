"""The least a Python pull can do, for scripts/bench-pull to measure beside
minirun and skopeo: the interpreter, click and requests imported (what
`minirun pull` imports), the manifest fetched, then every layer on a thread
of its own — downloaded, its blob hashed, gunzipped, the tar stream hashed
and written to one file. No tar is read, no file made from it, no store,
no progress. Usage: pull_floor.py REGISTRY/REPO:TAG OUTDIR"""
import hashlib
import os
import sys
import threading
import zlib

import click  # noqa: F401  (imported for its cost, as the CLI imports it)
import requests

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def main(name, out):
    domain, _, rest = name.partition("/")
    repo, _, tag = rest.rpartition(":")
    base = f"http://{domain}/v2/{repo}"
    session = requests.Session()
    layers = session.get(f"{base}/manifests/{tag}", headers={"Accept": MANIFEST}).json()["layers"]
    os.makedirs(out, exist_ok=True)

    def fetch(i, digest):
        blob, stream = hashlib.sha256(), hashlib.sha256()
        inflate = zlib.decompressobj(31)
        with session.get(f"{base}/blobs/{digest}", stream=True) as r, \
                open(os.path.join(out, str(i)), "wb") as f:
            for chunk in r.iter_content(1 << 20):
                blob.update(chunk)
                data = inflate.decompress(chunk)
                stream.update(data)
                f.write(data)
        assert "sha256:" + blob.hexdigest() == digest

    threads = [threading.Thread(target=fetch, args=(i, layer["digest"]))
               for i, layer in enumerate(layers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main(*sys.argv[1:])
