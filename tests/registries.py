"""Real registries for the tests: Debian's docker-registry (the reference
distribution server) on 127.0.0.1 with a free port and storage of its own,
plain, with htpasswd Basic auth, with token auth — a small token service
run here that signs real JWTs with a key the registry trusts — or behind TLS
with a CA made for the test. Also a throttling TCP proxy, to interrupt a
download halfway."""
import base64
import datetime
import http.server
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request

SERVICE, ISSUER = "minirun-test-registry", "minirun-test-tokens"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_key_and_cert(directory, name, ca=None, ip="127.0.0.1"):
    """An RSA key and a certificate for `ip` (self-signed, or signed by
    `ca` = (key, cert)); written as <name>.key/<name>.crt; returns (key, cert)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    import ipaddress
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(ca[1].subject if ca else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=2)))
    if ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(ip))]), critical=False)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    cert = builder.sign(ca[0] if ca else key, hashes.SHA256())
    with open(os.path.join(directory, f"{name}.key"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(os.path.join(directory, f"{name}.crt"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


class TokenService:
    """The token server of the distribution spec's token auth: GET
    /token?service=&scope= with Basic credentials (or none), answering a
    JWT whose `access` claim grants what `grants(user, repository)` allows.
    `lifetime` is the JWT's; `claimed` the expires_in it tells the client."""

    def __init__(self, directory, users, grants, lifetime=300, claimed=None):
        self.key, self.cert = make_key_and_cert(directory, "tokens")
        self.bundle = os.path.join(directory, "tokens.crt")
        self.users, self.grants = users, grants
        self.lifetime, self.claimed = lifetime, claimed
        self.issued = 0
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                service.answer(self)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, request):
        from urllib.parse import parse_qs, urlparse
        import jwt
        from cryptography.hazmat.primitives import serialization
        user = None
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(name) != password:
                request.send_response(401)
                request.send_header("Content-Type", "application/json")
                request.end_headers()
                request.wfile.write(b'{"errors":[{"code":"UNAUTHORIZED","message":"bad password"}]}')
                return
            user = name
        query = parse_qs(urlparse(request.path).query)
        access = []
        for scope in query.get("scope", []):
            kind, repo, actions = scope.split(":")
            allowed = [a for a in actions.split(",") if a in self.grants(user, repo)]
            access.append({"type": kind, "name": repo, "actions": allowed})
        now = int(time.time())
        der = self.cert.public_bytes(serialization.Encoding.DER)
        token = jwt.encode({"iss": ISSUER, "sub": user or "", "aud": SERVICE, "iat": now,
                            "nbf": now - 10, "exp": now + self.lifetime,
                            "jti": os.urandom(8).hex(), "access": access},
                           self.key, algorithm="RS256",
                           headers={"x5c": [base64.b64encode(der).decode()]})
        self.issued += 1
        body = json.dumps({"token": token, "expires_in": self.claimed or self.lifetime}).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Registry:
    """docker-registry serve, with the auth given: None, ("htpasswd", path)
    or ("token", TokenService); `tls` = (cert, key) paths."""

    def __init__(self, directory, auth=None, tls=None):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.port = free_port()
        self.domain = f"127.0.0.1:{self.port}"
        self.storage = os.path.join(directory, "storage")
        config = {"version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
                  "storage": {"filesystem": {"rootdirectory": self.storage},
                              "delete": {"enabled": True}},
                  "http": {"addr": self.domain, "secret": "minirun-test"}}
        if tls:
            config["http"]["tls"] = {"certificate": tls[0], "key": tls[1]}
        if auth and auth[0] == "htpasswd":
            config["auth"] = {"htpasswd": {"realm": "minirun-test", "path": auth[1]}}
        elif auth and auth[0] == "token":
            config["auth"] = {"token": {"realm": auth[1].url, "service": SERVICE,
                                        "issuer": ISSUER, "rootcertbundle": auth[1].bundle}}
        path = os.path.join(directory, "config.yml")
        with open(path, "w") as f:
            json.dump(config, f)          # YAML reads JSON
        self.log = open(os.path.join(directory, "registry.log"), "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", path], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.wait_ready(tls is not None)

    def wait_ready(self, tls):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"docker-registry exited: {open(self.log.name).read()}")
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start")

    def blob_path(self, digest):
        hexpart = digest.split(":", 1)[1]
        return os.path.join(self.storage, "docker", "registry", "v2", "blobs", "sha256",
                            hexpart[:2], hexpart, "data")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def htpasswd(path, users):
    import bcrypt
    with open(path, "w") as f:
        for user, password in users.items():
            f.write(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}\n")


def manifest_of(domain, repo, tag):
    """The manifest as the registry serves it (plain HTTP, no auth)."""
    request = urllib.request.Request(
        f"http://{domain}/v2/{repo}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json, "
                           "application/vnd.docker.distribution.manifest.v2+json, "
                           "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(request) as r:
        return json.load(r), r.headers.get("Docker-Content-Digest")


class SlowProxy:
    """A TCP proxy on loopback that passes the server's bytes at `rate`
    bytes a second: a download that takes long enough to interrupt."""

    def __init__(self, target_port, rate):
        self.rate, self.target = rate, target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.domain = f"127.0.0.1:{self.port}"
        self.closed = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self.pipe, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self.pipe, args=(server, client, self.rate), daemon=True).start()

    def pipe(self, src, dst, rate):
        try:
            while data := src.recv(16384 if rate else 65536):
                dst.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self):
        self.closed = True
        self.sock.close()
