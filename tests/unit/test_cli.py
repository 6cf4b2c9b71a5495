import json

import pytest

from jupyterhub_lab_ext.accounts.registry import AccountRegistry
from jupyterhub_lab_ext.auth import naming
from jupyterhub_lab_ext.cli import main as cli


@pytest.fixture
def ul(tmp_path):
    p = tmp_path / "userlist"
    p.write_text(
        "# staff\nalice@example.org admin group:teachers\nbob@gmail.com group:a group:b\ndave\n"
    )
    return p


def run(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_check_valid(ul, capsys):
    rc, out, err = run(capsys, "userlist", "check", str(ul), "--no-system-accounts")
    assert (rc, err) == (0, "")
    assert out.splitlines() == [
        f"{ul}: OK, 3 users (1 admins)",
        "naming: no username prefix; no domain rules (none given: pass --config with the hub's "
        "jupyterhub_config.py to check with its rules)",
    ]


def test_check_says_which_naming_rules_it_used(ul, tmp_path, capsys):
    cfg = tmp_path / "jupyterhub_config.py"
    cfg.write_text(
        "c = get_config()\n"
        "c.UserlistAuthenticator.domain_rules = {'example.org': '', 'uni.test': 'u'}\n"
    )
    rc, out, _ = run(capsys, "userlist", "check", str(ul), "--config", str(cfg))
    assert rc == 0
    assert out.splitlines()[1] == (
        "naming: no username prefix; domain rules example.org dropped, uni.test -> 'u' "
        f"(from {cfg})"
    )
    rc, out, _ = run(capsys, "userlist", "check", str(ul), "--prefix", "jh-")
    assert out.splitlines()[1] == (
        "naming: username prefix 'jh-'; no domain rules (from the command line)"
    )


@pytest.mark.parametrize(
    "text, lines",
    [
        ("alice admn\n", ["{p}:1: unknown token 'admn' (expected 'admin' or 'group:NAME')"]),
        (
            "a\nb\nA\nroot\n",
            [
                "{p}:3: duplicate identity 'A' (first on line 1)",
                "{p}:4: identity 'root': 'root' is a reserved or system account name and is never handed out",
            ],
        ),
    ],
    ids=["unknown-token", "duplicate-and-reserved"],
)
def test_check_invalid(tmp_path, capsys, text, lines):
    p = tmp_path / "userlist"
    p.write_text(text)
    rc, out, err = run(capsys, "userlist", "check", str(p), "--no-system-accounts")
    assert rc == 1 and out == ""
    assert err.splitlines() == [line.format(p=p) for line in lines]


def test_check_uses_machine_accounts(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(naming, "load_system_names", lambda uid_min=None: frozenset({"svc"}))
    p = tmp_path / "userlist"
    p.write_text("svc\n")
    rc, _, err = run(capsys, "userlist", "check", str(p))
    assert rc == 1 and "'svc' is a reserved" in err


def test_check_missing_file(tmp_path, capsys):
    rc, _, err = run(capsys, "userlist", "check", str(tmp_path / "nope"), "--no-system-accounts")
    assert rc == 1 and "cannot read" in err


def test_show_table_with_domain_rule(ul, capsys):
    rc, out, _ = run(
        capsys, "userlist", "show", str(ul), "--domain-rule", "example.org=", "--no-system-accounts"
    )
    assert rc == 0
    assert out.splitlines() == [
        "IDENTITY           USERNAME       ADMIN  GROUPS",
        "alice@example.org  alice          yes    teachers",
        "bob@gmail.com      bob-gmail-com         a,b",
        "dave               dave",
    ]


def test_show_json_with_hub_config(ul, tmp_path, capsys):
    cfg = tmp_path / "jupyterhub_config.py"
    cfg.write_text(
        "c = get_config()\n"
        f"c.UserlistOAuthenticator.userlist_file = {str(ul)!r}\n"
        "c.UserlistOAuthenticator.username_prefix = 'jh-'\n"
        "c.UserlistOAuthenticator.domain_rules = {'example.org': ''}\n"
    )
    rc, out, _ = run(
        capsys, "userlist", "show", "--config", str(cfg), "--json", "--no-system-accounts"
    )
    assert rc == 0
    rows = json.loads(out)
    assert [r["username"] for r in rows] == ["jh-alice", "jh-bob-gmail-com", "jh-dave"]
    assert rows[0] == {
        "identity": "alice@example.org",
        "username": "jh-alice",
        "admin": True,
        "groups": ["teachers"],
        "line": 2,
    }


def test_collision_from_hub_rules(tmp_path, capsys):
    p = tmp_path / "userlist"
    p.write_text("alice\nalice@example.org\n")
    assert run(capsys, "userlist", "check", str(p), "--no-system-accounts")[0] == 0
    rc, _, err = run(
        capsys, "userlist", "check", str(p), "--domain-rule", "example.org=", "--no-system-accounts"
    )
    assert rc == 1 and "both map to system username 'alice'" in err


def test_bad_rule_and_usage(capsys, ul):
    with pytest.raises(SystemExit):
        cli.main(["userlist", "check", str(ul), "--domain-rule", "nodash"])
    assert (
        run(capsys, "userlist", "check", str(ul), "--prefix", "9x", "--no-system-accounts")[0] == 1
    )
    assert run(capsys, "userlist", "check", "--no-system-accounts")[0] == 1
    assert run(capsys)[0] == 2
    assert run(capsys, "userlist")[0] == 2


def test_every_area_registers():
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"userlist", "homes"} <= set(commands)


def test_broken_hub_config_is_reported(ul, tmp_path, capsys):
    cfg = tmp_path / "jupyterhub_config.py"
    cfg.write_text("c = get_config()\nraise RuntimeError('needs /var/lib/x')\n")
    rc, _, err = run(capsys, "userlist", "check", str(ul), "--config", str(cfg))
    assert rc == 1
    assert err == f"{cfg}: cannot load hub config: RuntimeError: needs /var/lib/x\n"


def test_the_hub_config_is_read_as_the_hub_reads_it(ul, tmp_path, capsys):
    """A subclass of the admin's, given as a class object: its own section and the feature
    section both apply, and the more specific one wins."""
    cfg = tmp_path / "jupyterhub_config.py"
    cfg.write_text(
        "from jupyterhub_lab_ext.auth.authenticator import UserlistOAuthenticator\n"
        "class CourseAuthenticator(UserlistOAuthenticator):\n"
        "    pass\n"
        "c = get_config()\n"
        "c.JupyterHub.authenticator_class = CourseAuthenticator\n"
        f"c.CourseAuthenticator.userlist_file = {str(ul)!r}\n"
        "c.CourseAuthenticator.username_prefix = 'lab-'\n"
        "c.UserlistAuthenticator.username_prefix = 'not-this-'\n"
        "c.UserlistAuthenticator.domain_rules = {'example.org': ''}\n"
        "c.Authenticator.uid_min = 1000\n"
    )
    rc, out, err = run(
        capsys, "userlist", "show", "--config", str(cfg), "--json", "--no-system-accounts"
    )
    assert (rc, err) == (0, "")
    assert [r["username"] for r in json.loads(out)] == [
        "lab-alice",
        "lab-bob-gmail-com",
        "lab-dave",
    ]


@pytest.mark.parametrize(
    "setting, message",
    [
        ("'dummy'", "the hub's authenticator DummyAuthenticator has no userlist_file"),
        (
            "'userlists'",
            "c.JupyterHub.authenticator_class = 'userlists' is neither an installed "
            "jupyterhub.authenticators entry point nor a subclass of jupyterhub.auth.Authenticator",
        ),
    ],
    ids=["not-a-userlist-authenticator", "unknown-class"],
)
def test_a_hub_without_a_userlist_authenticator_is_named(ul, tmp_path, capsys, setting, message):
    cfg = tmp_path / "jupyterhub_config.py"
    cfg.write_text(f"c = get_config()\nc.JupyterHub.authenticator_class = {setting}\n")
    rc, _, err = run(capsys, "userlist", "check", str(ul), "--config", str(cfg))
    assert rc == 1 and message in err


def test_without_a_file_the_config_must_name_one(tmp_path, capsys):
    cfg = tmp_path / "jupyterhub_config.py"
    cfg.write_text("c = get_config()\n")
    rc, _, err = run(capsys, "userlist", "check", "--config", str(cfg))
    assert rc == 1 and "userlist_file must be set" in err


# ---- homes: the state dir and the template come from the hub's config too -------------------


def test_homes_read_the_hubs_state_dir_and_template(ul, tmp_path, capsys):
    state, template = tmp_path / "state", tmp_path / "template"
    template.mkdir()
    AccountRegistry(str(state)).set_user("jh-ann", uid=54321, gid=54321, home="/nonexistent/ann")
    cfg = tmp_path / "jupyterhub_config.py"
    cfg.write_text(
        "c = get_config()\n"
        f"c.UserlistOAuthenticator.userlist_file = {str(ul)!r}\n"
        f"c.UserlistAuthenticator.system_users_state_dir = {str(state)!r}\n"
        f"c.UserlistAuthenticator.home_template = {str(template)!r}\n"
    )
    rc, out, err = run(capsys, "homes", "list", "--config", str(cfg))
    assert (rc, err) == (0, "")
    assert out.splitlines()[1].split()[:3] == ["jh-ann", "54321", "/nonexistent/ann"]
    # the template of the config; the user's home is missing, so the sync fails for them
    rc, out, _ = run(capsys, "homes", "sync-template", "--config", str(cfg), "--dry-run")
    assert rc == 1 and out.splitlines()[-1] == (
        f"(dry run) {template}: 0 homes synced, 0 skipped, 1 failed"
    )
    rc, _, err = run(capsys, "homes", "sync-template", "--state-dir", str(state))
    assert rc == 1 and err == "no --template given and no home_template in --config\n"
