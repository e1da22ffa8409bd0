"""The OCI distribution protocol, client side: how images travel between a
registry and a store, over HTTP. Everything a registry says goes through here.

    GET  /v2/                                  is it a registry? what auth?
    GET  /v2/<repo>/manifests/<tag|digest>     the manifest (or an index of them)
    GET  /v2/<repo>/blobs/<digest>             a config or a layer (Range: to resume)
    HEAD /v2/<repo>/blobs/<digest>             is it there already?
    POST /v2/<repo>/blobs/uploads/[?mount=&from=]   start an upload (or mount a
                                               blob from another repository)
    PATCH <location>  / PUT <location>?digest= upload in chunks / finish it
    PUT  /v2/<repo>/manifests/<tag>            publish the manifest

Auth follows the registry's WWW-Authenticate challenge on a 401: `Basic`
sends the user and password, `Bearer` asks the token service it names for
a token scoped to the repository and action (pull, or pull,push), with the
credentials if there are any, anonymously if not. Tokens are kept per scope
until they expire; a 401 on a kept token asks for a fresh one, once.

The HTTP itself is `requests`: TLS checked against the system's CA store
(or a registry's own CA in certs.d), proxies from HTTP(S)_PROXY/NO_PROXY,
connections kept and reused.
"""
import ipaddress
import json
import os
import re
import time
from urllib.parse import urljoin

from minirun.errors import RegistryError
from minirun.image.reference import DOCKER_HUB

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
           "application/vnd.docker.distribution.manifest.v1+prettyjws")
INDEXES = (OCI_INDEX, DOCKER_LIST)
MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join(MANIFESTS + INDEXES)
CHUNK = 16 << 20          # uploads larger than this go in PATCHes of this size


def is_loopback(domain):
    host = domain.rsplit(":", 1)[0] if not domain.endswith("]") else domain
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_registries(store_root):
    """Registries reached over plain HTTP besides loopback ones: the store's
    daemon.json "insecure-registries" (Docker's key) and
    $MINIRUN_INSECURE_REGISTRIES (comma-separated host:port)."""
    found = [r for r in os.environ.get("MINIRUN_INSECURE_REGISTRIES", "").split(",") if r]
    try:
        with open(os.path.join(store_root, "daemon.json")) as f:
            found += json.load(f).get("insecure-registries") or []
    except (OSError, ValueError, AttributeError):
        pass
    return set(found)


def registry_ca(store_root, domain):
    """A registry's own CA certificate, as Docker keeps them: certs.d/<host:port>/ca.crt
    under the store, or under /etc/docker."""
    for base in (os.path.join(store_root, "certs.d"), "/etc/docker/certs.d"):
        path = os.path.join(base, domain, "ca.crt")
        if os.path.isfile(path):
            return path
    return None


def system_ca():
    import ssl
    paths = ssl.get_default_verify_paths()
    return paths.cafile or paths.capath or True


class Registry:
    """One registry, one HTTP session; `credentials` is (user, password) or None."""

    def __init__(self, domain, store_root, credentials=None):
        import requests
        self.domain = domain
        ca = registry_ca(store_root, domain)
        plain = ca is None and (is_loopback(domain) or domain in insecure_registries(store_root))
        host = "registry-1.docker.io" if domain == DOCKER_HUB else domain
        self.base = f"{'http' if plain else 'https'}://{host}"
        self.session = requests.Session()
        # Given with each request: a Session's own `verify` loses to
        # $REQUESTS_CA_BUNDLE, and a registry's CA must not.
        self.verify = ca or system_ca()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=8)   # one per parallel download
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.credentials = credentials
        self.tokens = {}            # scope → (token, expiry)
        self.basic = False
        self.pinged = False

    # --- auth ----------------------------------------------------------------
    def _auth_headers(self, scope):
        if self.basic and self.credentials:
            import base64
            return {"Authorization": "Basic " + base64.b64encode(
                ":".join(self.credentials).encode()).decode()}
        token, expiry = self.tokens.get(scope, (None, 0))
        if token and time.monotonic() < expiry:
            return {"Authorization": f"Bearer {token}"}
        return {}

    def _answer_challenge(self, response, scope):
        """A 401: do what its WWW-Authenticate header asks."""
        header = response.headers.get("WWW-Authenticate", "")
        kind, _, rest = header.partition(" ")
        params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if kind.lower() == "basic":
            if not self.credentials:
                raise RegistryError(f"{self.domain}: the registry wants a user name and password: "
                                    f"minirun login {self.domain}")
            self.basic = True
        elif kind.lower() == "bearer" and "realm" in params:
            self.tokens[scope] = self.fetch_token(params["realm"], params.get("service"), scope)
        else:
            raise RegistryError(f"{self.domain}: unauthorized, and the registry names no way "
                                f"to log in ({header or 'no WWW-Authenticate header'})")

    def fetch_token(self, realm, service, scope):
        """Ask the token service for a Bearer token for `scope` — the
        distribution spec's token authentication."""
        import requests
        query = {"scope": scope.split(" ")} if scope else {}
        if service:
            query["service"] = service
        try:
            r = self.session.get(realm, params=query, auth=self.credentials, timeout=60,
                                 verify=self.verify)
        except requests.RequestException as e:
            raise RegistryError(f"{self.domain}: the token service {realm} cannot be reached: "
                                f"{_reason(e)}") from None
        if r.status_code in (401, 403):
            raise RegistryError(f"{self.domain}: the token service refused "
                                + (f"the user name or password of {self.credentials[0]!r}"
                                   if self.credentials else "anonymous access")
                                + f": {_error_text(r)}")
        if r.status_code != 200:
            raise RegistryError(f"{self.domain}: the token service answered {r.status_code}: "
                                f"{_error_text(r)}")
        try:
            body = r.json()
            token = body.get("token") or body["access_token"]
        except (ValueError, KeyError, AttributeError):
            raise RegistryError(f"{self.domain}: the token service sent no token") from None
        lifetime = body.get("expires_in") or 60
        return token, time.monotonic() + max(int(lifetime) - 5, 1)

    # --- requests ----------------------------------------------------------------
    def request(self, method, path, scope, ok=(200,), **kwargs):
        """Send one request with the auth the registry asked for; a 401
        is answered and the request sent once more (bodies are bytes, so
        they can be)."""
        import requests
        if not self.pinged and path != "/v2/":
            self.pinged = True
            self.request("GET", "/v2/", "")      # the version check, as docker does first
        url = path if path.startswith("http") else urljoin(self.base, path)
        for attempt in (1, 2):
            headers = {**kwargs.pop("headers", {}), **self._auth_headers(scope)}
            try:
                r = self.session.request(method, url, headers=headers, timeout=(30, 300),
                                         verify=self.verify, **kwargs)
            except requests.exceptions.SSLError as e:
                raise RegistryError(f"{self.domain}: TLS failed ({_reason(e)}); for a registry "
                                    f"with its own CA, put it in certs.d/{self.domain}/ca.crt "
                                    f"under the store") from None
            except requests.RequestException as e:
                raise RegistryError(f"{self.domain}: cannot reach the registry: {_reason(e)}") \
                    from None
            if r.status_code == 400 and method == "GET" and "HTTPS server" in r.text:
                raise RegistryError(f"{self.domain} speaks HTTPS, not plain HTTP: give minirun its "
                                    f"CA certificate as certs.d/{self.domain}/ca.crt under the store")
            kwargs["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
            if r.status_code != 401 or attempt == 2:
                break
            r.close()
            self.tokens.pop(scope, None)           # expired, or never had one
            self._answer_challenge(r, scope)
        if r.status_code in (401, 403):
            raise RegistryError(f"{self.domain}: access denied ({scope or 'registry'}): "
                                f"{_error_text(r)}")
        if r.status_code not in ok:
            raise RegistryError(f"{self.domain}: {method} {path} answered {r.status_code}: "
                                f"{_error_text(r)}")
        return r

    def get_manifest(self, repo, reference):
        """(bytes, media type) of a manifest or an index."""
        r = self.request("GET", f"/v2/{repo}/manifests/{reference}", pull_scope(repo),
                         ok=(200, 404), headers={"Accept": ACCEPT})
        if r.status_code == 404:
            sep = "@" if reference.startswith("sha256:") else ":"
            raise RegistryError(f"{self.domain}/{repo}{sep}{reference}: not found in the registry "
                                f"({_error_text(r)})")
        media = r.headers.get("Content-Type", "").split(";")[0].strip()
        return r.content, media

    def open_blob(self, repo, digest, offset=0):
        """A streamed response for the blob; with `offset`, only what follows
        it if the registry honours Range (status 206), else all (200)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        r = self.request("GET", f"/v2/{repo}/blobs/{digest}", pull_scope(repo),
                         ok=(200, 206, 404), headers=headers, stream=True)
        if r.status_code == 404:
            raise RegistryError(f"{self.domain}/{repo}: blob {digest[:19]}… is not in the registry")
        return r

    def has_blob(self, repo, digest, scope):
        r = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope, ok=(200, 404))
        return r.status_code == 200

    def mount_blob(self, repo, digest, source):
        """Cross-repository mount: ask the registry to link a blob it already
        holds for `source` into `repo`. None if done (201), else the upload
        location it opened instead (202)."""
        scope = push_scope(repo) + " " + pull_scope(source)
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope, ok=(201, 202),
                         params={"mount": digest, "from": source})
        return None if r.status_code == 201 else urljoin(self.base, r.headers["Location"])

    def upload_blob(self, repo, digest, f, size, location=None, progress=None):
        """Upload from file `f`: one PUT when it fits in a chunk (monolithic),
        else PATCHes of CHUNK bytes then a closing PUT (chunked)."""
        scope = push_scope(repo)
        if location is None:
            r = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope, ok=(202,))
            location = urljoin(self.base, r.headers["Location"])
        if size <= CHUNK:
            data = f.read()
            self.request("PUT", _with_digest(location, digest), scope, ok=(201,), data=data,
                         headers={"Content-Type": "application/octet-stream"})
            if progress:
                progress(size)
            return
        sent = 0
        while sent < size:
            data = f.read(CHUNK)
            r = self.request("PATCH", location, scope, ok=(202,), data=data, headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{sent}-{sent + len(data) - 1}"})
            location = urljoin(self.base, r.headers["Location"])
            sent += len(data)
            if progress:
                progress(sent)
        self.request("PUT", _with_digest(location, digest), scope, ok=(201,))

    def put_manifest(self, repo, tag, data, media_type):
        self.request("PUT", f"/v2/{repo}/manifests/{tag}", push_scope(repo), ok=(201,),
                     data=data, headers={"Content-Type": media_type})

    def check_login(self):
        """GET /v2/ with the credentials: does the registry (or its token
        service) accept them?"""
        self.request("GET", "/v2/", "", ok=(200,))


def _with_digest(location, digest):
    """An upload's location with ?digest= (or &digest=): the PUT that closes it."""
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


def pull_scope(repo):
    return f"repository:{repo}:pull"


def push_scope(repo):
    return f"repository:{repo}:pull,push"


def _error_text(r):
    """The registry's own words: the distribution spec's {"errors": [...]}."""
    try:
        errors = r.json().get("errors") or []
        text = "; ".join(f"{e.get('code', '').lower()}: {e.get('message', '')}".strip(": ")
                         for e in errors)
        if text:
            return text
    except (ValueError, AttributeError):
        pass
    return (r.text or r.reason or "").strip()[:200] or f"HTTP {r.status_code}"


def _reason(e):
    """What went wrong, without urllib3's wrapping: `Connection refused`,
    `Name or service not known`, `certificate verify failed: ...`."""
    text = str(e)
    for pattern in (r"\[SSL: \w+\] ([^(]*?)\s*\(_ssl", r"\[Errno -?\d+\] ([^)\"']+)",
                    r"(Failed to resolve '[^']+')", r"(timed out)"):
        m = re.search(pattern, text)
        if m:
            return m.group(1).strip()
    return type(e).__name__
