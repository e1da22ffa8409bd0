"""`minirun-oci`: runc's command line, so engines can drive minirun.

    containerd:  ctr run --runc-binary minirun-oci IMAGE ID CMD
    podman:      podman --runtime $(command -v minirun-oci) run ...

Engines pass runc's global flags to every call (--root, --log,
--log-format json) and read a failure's reason from the log, one JSON
object per line ({"level": "error", "msg": ..., "time": ...}); we write
the same line to stderr. Every failure exits 1 — an unknown flag too.
As in cli.py, nothing here touches the kernel: oci/runtime.py does.
"""
import json
import os
import sys
import time

import click

from minirun.errors import MinirunError, exit_now

CONTEXT = {"help_option_names": ["-h", "--help"]}


class Log:
    """--log FILE --log-format text|json: where errors (and, with --debug,
    each call) are written, as runc's logrus writes them."""

    def __init__(self, path=None, fmt="text", debug=False):
        self.path, self.format, self.debug_on = path, fmt, debug

    @classmethod
    def from_argv(cls, argv):
        """The log flags, read before click parses anything, so even a bad
        flag is reported in the log the engine will read."""
        found = {}
        args = iter(argv)
        for arg in args:
            if not arg.startswith("-"):
                break                           # the verb: global flags end here
            flag, sep, value = arg.partition("=")
            if flag in ("--root", "--log", "--log-format") and not sep:
                value = next(args, "")
            found[flag] = value
        return cls(found.get("--log"), found.get("--log-format", "text"))

    def write(self, level, msg, stderr=True):
        if stderr:
            sys.stderr.write(f"minirun-oci: {msg}\n")
        if not self.path:
            return
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
        if self.format == "json":
            line = json.dumps({"level": level, "msg": msg, "time": when})
        else:
            line = f"time={json.dumps(when)} level={level} msg={json.dumps(msg)}"
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass

    def error(self, msg):
        self.write("error", msg)

    def warning(self, msg):
        self.write("warning", msg)

    def debug(self, msg):
        if self.debug_on:
            self.write("debug", msg, stderr=False)


def runtime():
    from minirun.oci.runtime import Runtime
    params = click.get_current_context().find_root().params
    return Runtime(params["root"], params["systemd_cgroup"])


def log():
    return click.get_current_context().find_root().obj


def say(warnings):
    for warning in warnings:
        log().warning(warning)


@click.group(context_settings=CONTEXT)
@click.option("--root", default="/run/minirun-oci", show_default=True,
              help="Where container state is kept.")
@click.option("--log", "log_path", metavar="FILE", help="Write errors here too.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--systemd-cgroup", is_flag=True,
              help="cgroupsPath is slice:prefix:name (minirun still writes cgroupfs itself).")
@click.option("--debug", is_flag=True, help="Log each call; print each kernel step (--explain).")
@click.pass_context
def cli(ctx, root, log_path, log_format, systemd_cgroup, debug):
    """minirun's OCI runtime: runc's verbs on OCI bundles."""
    ctx.obj = Log(log_path, log_format, debug)
    ctx.obj.debug("minirun-oci " + " ".join(sys.argv[1:]))
    if debug:
        from minirun.linux import explain
        explain.enable()
    if os.geteuid() != 0:
        raise MinirunError("minirun-oci must run as root: it creates namespaces, mounts and "
                           "cgroups")


CREATE_OPTIONS = [
    click.option("-b", "--bundle", default=".", show_default=True,
                 help="The bundle: config.json and the root filesystem."),
    click.option("--pid-file", help="Write the container's PID here."),
    click.option("--console-socket", help="A unix socket to send the pty's master to."),
    click.option("--no-pivot", is_flag=True, help="chroot(2) instead of pivot_root(2) (escapable)."),
    click.option("--no-new-keyring", is_flag=True,
                 help="Accepted: minirun never makes a session keyring."),
    click.option("--preserve-fds", type=click.IntRange(0), default=0,
                 help="Pass fds 3 .. 3+N-1 on to the container."),
    click.argument("container_id"),
]


def with_options(options):
    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


@cli.command(context_settings=CONTEXT)
@with_options(CREATE_OPTIONS)
def create(bundle, pid_file, console_socket, no_pivot, no_new_keyring, preserve_fds, container_id):
    """Start a container up to its program's execve; `start` lets it go."""
    runtime().create(container_id, bundle, pid_file, console_socket, no_pivot, preserve_fds)


@cli.command(context_settings=CONTEXT)
@click.argument("container_id")
def start(container_id):
    """Let a created container run its program."""
    say(runtime().start(container_id))


@cli.command(context_settings=CONTEXT)
@with_options(CREATE_OPTIONS)
@click.option("-d", "--detach", is_flag=True, help="Return once it runs.")
def run(bundle, pid_file, console_socket, no_pivot, no_new_keyring, preserve_fds, container_id,
        detach):
    """create + start; without -d, wait for it, delete it, exit with its status."""
    from minirun.runtime.start import wait_exit_status
    rt = runtime()
    pid = rt.create(container_id, bundle, pid_file, console_socket, no_pivot, preserve_fds)
    try:
        say(rt.start(container_id))
    except BaseException:
        rt.delete(container_id, force=True)     # as runc: a run that did not start leaves nothing
        raise
    if detach:
        return 0
    code = wait_exit_status(pid)        # our own child: create forked it
    say(rt.delete(container_id, force=True))
    return code


@cli.command(context_settings=CONTEXT)
@click.argument("container_id")
def state(container_id):
    """Print the container's OCI state (JSON)."""
    click.echo(json.dumps(runtime().state(container_id), indent=2))


@cli.command(context_settings=CONTEXT)
@click.option("-a", "--all", "all_processes", is_flag=True, help="Signal every process of it.")
@click.argument("container_id")
@click.argument("signal", default="SIGTERM")
def kill(all_processes, container_id, signal):
    """Send a signal (default SIGTERM) to the container's PID 1."""
    from minirun.runtime.lifecycle import parse_signal
    runtime().kill(container_id, parse_signal(signal), all_processes)


@cli.command(context_settings=CONTEXT)
@click.option("-f", "--force", is_flag=True, help="Kill it first if it runs.")
@click.argument("container_id")
def delete(force, container_id):
    """Remove a stopped (or never started) container."""
    say(runtime().delete(container_id, force))


@cli.command("exec", context_settings={**CONTEXT, "allow_interspersed_args": False})
@click.option("-p", "--process", "process_file", help="An OCI process (JSON); '-' for stdin.")
@click.option("-d", "--detach", is_flag=True)
@click.option("--pid-file")
@click.option("--console-socket")
@click.option("-t", "--tty", is_flag=True)
@click.option("--cwd")
@click.option("-e", "--env", multiple=True)
@click.option("-u", "--user", help="UID[:GID]")
@click.option("-g", "--additional-gids", multiple=True, type=int)
@click.option("-c", "--cap", multiple=True, help="Add a capability.")
@click.option("--no-new-privs", is_flag=True)
@click.option("--preserve-fds", type=click.IntRange(0), default=0)
@click.argument("container_id")
@click.argument("command", nargs=-1)
def exec_(process_file, detach, pid_file, console_socket, tty, cwd, env, user, additional_gids,
          cap, no_new_privs, preserve_fds, container_id, command):
    """Run another process in a running container."""
    rt = runtime()
    if process_file:
        process, nnp = read_process(process_file)
    else:
        process, nnp = process_from_flags(rt, container_id, command, tty, cwd, env, user,
                                          additional_gids, cap, no_new_privs)
    return rt.exec(container_id, process, detach, pid_file, console_socket, preserve_fds, nnp)


def read_json_argument(flag, path):
    """The JSON document a flag names: a file, or '-' for stdin."""
    try:
        if path == "-":
            return json.load(sys.stdin)
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise MinirunError(f"{flag} {path}: {e.strerror}") from None
    except ValueError as e:
        raise MinirunError(f"{flag} {path}: not valid JSON: {e}") from None


def read_process(path):
    from minirun.oci.config import BundleError, Fields, translate_process
    obj = read_json_argument("--process", path)
    try:
        fields = Fields(obj, "")
        return translate_process(fields), fields.get("noNewPrivileges", bool, False)
    except BundleError as e:
        raise MinirunError(str(e).replace("config.json: ", f"--process {path}: ", 1)) from None


def process_from_flags(rt, cid, command, tty, cwd, env, user, gids, caps, nnp):
    """runc's rule: the container's own process, with these changes."""
    from minirun import record
    from minirun.runtime.spec import spec_from_dict
    if not command:
        raise click.UsageError("exec needs a command, or --process FILE")
    spec = spec_from_dict(rt.load(cid)["spec"])
    p = spec.process
    environment = dict(p.env)
    for entry in env:
        key, _, value = entry.partition("=")
        environment[key] = value
    who = p.user
    if user:
        uid, _, gid = user.partition(":")
        try:
            who = record.replace(who, uid=int(uid), gid=int(gid or 0))
        except ValueError:
            raise click.UsageError(f"--user {user}: want UID[:GID], numbers") from None
    if gids:
        who = record.replace(who, additional_gids=list(gids))
    sets = p.capabilities
    if caps and sets is not None:
        sets = record.replace(sets, **{k: getattr(sets, k) + list(caps)
                                       for k in ("bounding", "effective", "permitted")})
    process = record.replace(p, args=list(command), env=environment, cwd=cwd or p.cwd,
                             tty=tty, user=who, capabilities=sets)
    return process, True if nnp else spec.no_new_privileges


@cli.command(context_settings=CONTEXT)
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.argument("container_id")
@click.argument("ps_args", nargs=-1)
def ps(fmt, container_id, ps_args):
    """The container's processes (their host PIDs)."""
    pids = runtime().pids(container_id)
    if fmt == "json":
        click.echo(json.dumps(pids))
        return
    click.echo("PID   CMD")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        click.echo(f"{pid:<5} {cmd}")


@cli.command(context_settings=CONTEXT)
@click.argument("container_id")
def pause(container_id):
    """Freeze every process of the container (the freezer cgroup)."""
    runtime().pause(container_id)


@cli.command(context_settings=CONTEXT)
@click.argument("container_id")
def resume(container_id):
    """Thaw a paused container."""
    runtime().resume(container_id)


@cli.command("list", context_settings=CONTEXT)
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("-q", "--quiet", is_flag=True, help="Only the ids.")
def list_(fmt, quiet):
    """The containers in the state root."""
    states = runtime().list()
    if quiet:
        for s in states:
            click.echo(s["id"])
    elif fmt == "json":
        click.echo(json.dumps(states))
    else:
        click.echo(f"{'ID':<20} {'PID':<8} {'STATUS':<10} {'BUNDLE':<40} CREATED")
        for s in states:
            click.echo(f"{s['id']:<20} {s['pid']:<8} {s['status']:<10} {s['bundle']:<40} "
                       f"{s['created']}")


@cli.command(context_settings=CONTEXT)
def features():
    """What this runtime supports (the runtime spec's features document)."""
    from minirun.oci.runtime import features as document
    click.echo(json.dumps(document(), indent=2))


@cli.command(context_settings=CONTEXT)
@click.option("-b", "--bundle", default=".", show_default=True)
def spec(bundle):
    """Write a default config.json into the bundle."""
    from minirun.oci.config import default_config
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise MinirunError(f"{path} exists: remove it first")
    try:
        with open(path, "x") as f:
            json.dump(default_config(), f, indent=2)
    except OSError as e:
        raise MinirunError(f"{path}: {e.strerror}") from None


@cli.command(context_settings=CONTEXT)
@click.option("-r", "--resources", "resources_file", help="linux.resources as JSON; '-' for stdin.")
@click.option("--memory", type=int)
@click.option("--memory-swap", type=int)
@click.option("--cpu-quota", type=int)
@click.option("--cpu-period", type=int)
@click.option("--cpu-share", type=int)
@click.option("--cpuset-cpus")
@click.option("--pids-limit", type=int)
@click.option("--blkio-weight", type=int)
@click.argument("container_id")
def update(resources_file, memory, memory_swap, cpu_quota, cpu_period, cpu_share, cpuset_cpus,
           pids_limit, blkio_weight, container_id):
    """Change a container's cgroup limits."""
    from minirun.oci.config import BundleError, Fields, translate_resources
    obj = read_json_argument("--resources", resources_file) if resources_file else {}
    for path, value in ((("memory", "limit"), memory), (("memory", "swap"), memory_swap),
                        (("cpu", "quota"), cpu_quota), (("cpu", "period"), cpu_period),
                        (("cpu", "shares"), cpu_share), (("cpu", "cpus"), cpuset_cpus),
                        (("pids", "limit"), pids_limit), (("blockIO", "weight"), blkio_weight)):
        if value is not None:
            obj.setdefault(path[0], {})[path[1]] = value
    try:
        resources = translate_resources(Fields(obj, ""))
    except BundleError as e:
        raise MinirunError(str(e).replace("config.json: ", "--resources: ", 1)) from None
    if not obj.get("cpu", {}).get("period"):
        resources.cpu_period = runtime_period(container_id) if resources.cpu_quota else 100_000
    runtime().update(container_id, resources)


def runtime_period(cid):
    """--cpu-quota alone keeps the period the container has."""
    return runtime().load(cid)["spec"]["resources"]["cpu_period"]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    log = Log.from_argv(argv)
    try:
        code = cli.main(args=argv, prog_name="minirun-oci", standalone_mode=False, obj=log)
        code = code if isinstance(code, int) else 0
    except click.exceptions.Exit as e:
        code = e.exit_code
    except SystemExit as e:
        code = e.code
    except click.ClickException as e:
        log.error(e.format_message())
        code = 1
    except click.exceptions.Abort:
        log.error("interrupted")
        code = 1
    except MinirunError as e:
        log.error(str(e))
        code = 1
    except KeyboardInterrupt:
        code = 130
    exit_now(code)
