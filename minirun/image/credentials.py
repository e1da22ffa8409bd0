"""Registry credentials in Docker's own file, so `docker login` and
`minirun login` share them: $DOCKER_CONFIG/config.json, or
~/.docker/config.json.

    {"auths": {"127.0.0.1:5000": {"auth": base64("user:password")}}}

Docker Hub's key is its old index URL. Credential helpers (credsStore,
credHelpers) are programs minirun does not run: entries kept by one are
not found here, and login says so rather than writing beside them.
"""
import base64
import json
import os

from minirun.errors import UsageError
from minirun.image.reference import DOCKER_HUB
from minirun.linux.files import write_atomic

HUB_KEY = "https://index.docker.io/v1/"


def config_path():
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def _key(domain):
    return HUB_KEY if domain in (DOCKER_HUB, "index.docker.io", "registry-1.docker.io") else domain


def _read():
    path = config_path()
    try:
        with open(path) as f:
            config = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: not a Docker config file ({e}); fix or remove it") from None
    if not isinstance(config, dict):
        raise UsageError(f"{path}: not a Docker config file (not a JSON object)")
    return config


def lookup(domain):
    """(user, password) for the registry, or None: then requests are anonymous."""
    entry = (_read().get("auths") or {}).get(_key(domain)) or {}
    auth = entry.get("auth")
    if not auth:
        return None
    try:
        user, _, password = base64.b64decode(auth).decode().partition(":")
    except ValueError:
        raise UsageError(f"{config_path()}: the credentials for {domain} are not base64 "
                         f"user:password; log in again") from None
    return user, password


def store(domain, user, password):
    """Remember credentials (the file stays 0600: it holds a password)."""
    config = _read()
    if config.get("credsStore") or (config.get("credHelpers") or {}).get(_key(domain)):
        raise UsageError(f"{config_path()} hands credentials to a helper program, which minirun "
                         f"does not run; log in with docker, or remove credsStore/credHelpers")
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config.setdefault("auths", {})[_key(domain)] = {"auth": auth}
    _write(config)


def forget(domain):
    """Drop the registry's credentials; False if there were none."""
    config = _read()
    if _key(domain) not in (config.get("auths") or {}):
        return False
    del config["auths"][_key(domain)]
    _write(config)
    return True


def _write(config):
    path = config_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    old = os.umask(0o077)
    try:
        write_atomic(path, json.dumps(config, indent="\t") + "\n")
    finally:
        os.umask(old)
