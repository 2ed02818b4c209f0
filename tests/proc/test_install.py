"""`make install` and `make uninstall` into a temporary DESTDIR.

The install reuses the binaries under test: make is given BUILD (and SAN=1
for a sanitizer build) so that it finds them up to date instead of building
others with other flags. Then the installed binaries run, both man pages
render without a warning, the shell completions parse and complete, and
uninstall removes every file install put there.
"""
import os
import re
import shutil
import stat
import subprocess

import pytest

from conftest import BUILD, ROOT, SLOW, env_for

PREFIX = "/usr"
# What install puts where, relative to DESTDIR, and with which mode.
FILES = {
    "usr/bin/longhaul": 0o755,
    "usr/bin/longhaul-mockllm": 0o755,
    "usr/share/man/man1/longhaul.1": 0o644,
    "usr/share/man/man5/longhaul-spec.5": 0o644,
    "usr/share/bash-completion/completions/longhaul": 0o644,
    "usr/share/zsh/site-functions/_longhaul": 0o644,
    "usr/lib/systemd/system/longhaul.service": 0o644,
}
COMMANDS = ["run", "serve", "submit", "ls", "status", "watch", "pause", "resume", "cancel",
            "set", "rm", "logs", "results", "failures", "retry", "verify"]


def make(target, destdir):
    build = os.path.realpath(BUILD)
    root = os.path.realpath(ROOT)
    if build.startswith(root + os.sep):
        build = os.path.relpath(build, root)
    args = ["make", "--no-print-directory", "-C", root, target, "BUILD=" + build,
            "DESTDIR=" + str(destdir), "PREFIX=" + PREFIX]
    if os.environ.get("LONGHAUL_SAN") == "1":
        args.append("SAN=1")
    env = dict(os.environ)
    # Run under `make test`, the outer make's jobserver is not ours.
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(k, None)
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=900 * SLOW)


def installed_files(destdir):
    found = set()
    for d, _, names in os.walk(destdir):
        for n in names:
            found.add(os.path.relpath(os.path.join(d, n), destdir))
    return found


@pytest.fixture(scope="module")
def dest(tmp_path_factory):
    d = tmp_path_factory.mktemp("destdir")
    r = make("install", d)
    assert r.returncode == 0, r.stdout + r.stderr
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_every_file_lands_with_its_mode(dest):
    assert installed_files(dest) == set(FILES)
    for rel, mode in FILES.items():
        assert stat.S_IMODE(os.stat(dest / rel).st_mode) == mode, rel


def test_installed_binaries_run(dest):
    r = subprocess.run([str(dest / "usr/bin/longhaul"), "--version"], env=env_for(),
                       capture_output=True, text=True, timeout=60 * SLOW)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "longhaul 0.1.0"
    for lib in ("libcurl", "SQLite", "jansson", "libfyaml", "OpenSSL", "libmicrohttpd"):
        assert re.search(r"\b%s \d+\.\d+" % lib, lines[1]), (lib, lines[1])
    same = subprocess.run([str(dest / "usr/bin/longhaul"), "version"], env=env_for(),
                          capture_output=True, text=True, timeout=60 * SLOW)
    assert same.returncode == 0 and same.stdout == r.stdout
    r = subprocess.run([str(dest / "usr/bin/longhaul-mockllm"), "--help"], env=env_for(),
                       capture_output=True, text=True, timeout=60 * SLOW)
    assert r.returncode == 0, r.stderr
    assert "usage: longhaul-mockllm" in r.stdout + r.stderr


def test_man_pages_carry_the_version(dest):
    r = subprocess.run([str(dest / "usr/bin/longhaul"), "--version"], env=env_for(),
                       capture_output=True, text=True, timeout=60 * SLOW)
    version = r.stdout.splitlines()[0]
    for page in ("usr/share/man/man1/longhaul.1", "usr/share/man/man5/longhaul-spec.5"):
        with open(dest / page) as f:
            th = [line for line in f if line.startswith(".TH ")]
        assert len(th) == 1 and '"%s"' % version in th[0], (page, th, version)


def test_unit_names_the_installed_binary(dest):
    with open(dest / "usr/lib/systemd/system/longhaul.service") as f:
        unit = f.read()
    assert re.search(r"^ExecStart=/usr/bin/longhaul serve\b", unit, re.M), unit
    assert "/usr/local" not in unit and str(dest) not in unit


def render(page):
    if not shutil.which("man"):
        pytest.skip("man is not installed (scripts/install-deps.sh installs man-db)")
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MANPAGER="cat", PAGER="cat")
    env.pop("MAN_KEEP_FORMATTING", None)
    r = subprocess.run(["man", "--warnings", "-l", str(page)], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr
    return r.stdout


def test_longhaul_1_renders_without_warnings(dest):
    text = render(dest / "usr/share/man/man1/longhaul.1")
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "ENVIRONMENT",
                    "FILES", "SEE ALSO"):
        assert re.search(r"^%s$" % section, text, re.M), section
    for cmd in COMMANDS:
        assert re.search(r"^ +(longhaul )?%s\b" % cmd, text, re.M), cmd
    status = text[text.index("\nEXIT STATUS"):text.index("\nENVIRONMENT")]
    for code in (0, 1, 2, 3, 4, 5, 6, 7, 69, 71, 77, 130, 143):
        assert re.search(r"^ +%d\b" % code, status, re.M), code
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "LONGHAUL_URL", "LONGHAUL_TOKEN",
                "LONGHAUL_HOME", "NO_COLOR"):
        assert re.search(r"^ +%s$" % var, text, re.M), var


def test_longhaul_spec_5_renders_without_warnings(dest):
    text = render(dest / "usr/share/man/man5/longhaul-spec.5")
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "FIELDS", "INPUT", "TEMPLATES", "OUTPUT",
                    "EXAMPLES", "SEE ALSO"):
        assert re.search(r"^%s$" % section, text, re.M), section
    # Every field the spec loader knows (src/io/spec.c), each under FIELDS.
    for field in ("name", "input", "key", "prompt", "system", "model", "base_url", "api_key_env",
                  "max_tokens", "temperature", "stream", "concurrency", "retry", "max_attempts",
                  "base", "factor", "cap", "jitter", "timeouts", "connect", "request",
                  "first_token", "output", "errors"):
        assert re.search(r"^ +%s\b" % field, text, re.M), field


def bash_complete(script, *words):
    """The completions bash offers for the last of words (COMP_WORDS)."""
    quoted = " ".join("'%s'" % w for w in words)
    prog = ('source "$1" && COMP_WORDS=(%s) && COMP_CWORD=%d && _longhaul && '
            'printf "%%s\\n" "${COMPREPLY[@]}"' % (quoted, len(words) - 1))
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog, "bash", str(script)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return [w for w in r.stdout.split("\n") if w]


def test_bash_completion(dest):
    script = dest / "usr/share/bash-completion/completions/longhaul"
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert bash_complete(script, "longhaul", "ru") == ["run"]
    assert set(COMMANDS) <= set(bash_complete(script, "longhaul", ""))
    assert bash_complete(script, "longhaul", "run", "--retry-f") == ["--retry-failed"]
    assert bash_complete(script, "longhaul", "run", "--sync", "") == ["normal", "full"]
    assert bash_complete(script, "longhaul", "pause", "3", "--n") == ["--now"]
    assert "--max-tokens" in bash_complete(script, "longhaul", "set", "3", "--")


def help_options(cmd):
    """The long options `longhaul CMD --help` prints, or None when this build
    has no such command."""
    r = subprocess.run([os.path.join(BUILD, "longhaul"), cmd, "--help"], env=env_for(),
                       capture_output=True, text=True, timeout=60 * SLOW)
    if r.returncode != 0 and "unknown command" in r.stderr:
        return None
    assert r.returncode == 0, r.stderr
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", r.stdout))


def zsh_options(text):
    """Each command's long options in the zsh completion, by case branch."""
    shared = {}
    for name in ("client", "timeouts"):
        m = re.search(r"^%s=\((.*?)^\)" % name, text, re.M | re.S)
        shared[name] = set(re.findall(r"(--[a-z][a-z0-9-]*)", m.group(1)))
    opts = {}
    for m in re.finditer(r"^  ([a-z|]+)\)\n(.*?)^    ;;", text, re.M | re.S):
        found = set(re.findall(r"(--[a-z][a-z0-9-]*)", m.group(2)))
        for name, flags in shared.items():
            if "$" + name in m.group(2):
                found |= flags
        for cmd in m.group(1).split("|"):
            opts[cmd] = found
    return opts


def test_completions_know_every_option_of_every_command(dest):
    bash = dest / "usr/share/bash-completion/completions/longhaul"
    with open(dest / "usr/share/zsh/site-functions/_longhaul") as f:
        zsh = zsh_options(f.read())
    checked = 0
    for cmd in COMMANDS:
        want = help_options(cmd)
        if want is None:
            continue
        checked += 1
        r = subprocess.run(["bash", "--norc", "--noprofile", "-c", 'source "$1" && _longhaul_opts "$2"',
                            "bash", str(bash), cmd], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert want <= set(r.stdout.split()), (cmd, want - set(r.stdout.split()))
        assert want <= zsh.get(cmd, set()), (cmd, want - zsh.get(cmd, set()))
    assert checked >= 13


def test_zsh_completion_parses(dest):
    if not shutil.which("zsh"):
        pytest.skip("zsh is not installed")
    r = subprocess.run(["zsh", "-n", str(dest / "usr/share/zsh/site-functions/_longhaul")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_uninstall_removes_every_file(tmp_path):
    d = tmp_path / "destdir"
    r = make("install", d)
    assert r.returncode == 0, r.stdout + r.stderr
    assert installed_files(d) == set(FILES)
    r = make("uninstall", d)
    assert r.returncode == 0, r.stdout + r.stderr
    assert installed_files(d) == set()
