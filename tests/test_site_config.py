"""site.toml is validated whole before a hospital's daemon starts; the node config and the
SuperNode command line follow from it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from client.daemon import supervisor as daemon
from client.daemon.site_config import load_site_config
from common.ops import pki
from common.errors import ConfigError, SecurityError
from tests.deploy_files import REPO, app, pki_dir, runner, site_toml  # noqa: F401 - pki_dir is a fixture


def test_valid_site_toml_and_node_config(tmp_path: Path, pki_dir: Path) -> None:
    cfg = load_site_config(site_toml(tmp_path, pki_dir, site="require-secagg = false\nruntime-port = 0"))
    assert cfg.dataset == "heart-disease" and cfg.dataset_site == "cleveland"  # site defaults to the name
    node = cfg.node_config()
    assert node == {
        "site": "cleveland", "state-dir": str((tmp_path / "state").resolve()), "device": "auto",
        "epsilon": 5.0, "delta": 1e-4, "require-secagg": False, "dataset": "heart-disease",
        "dataset-site": "cleveland", "privacy-mode": "sample-dp", "allow-modes": "sample-dp",
        "total-epsilon": 5.0, "accountant": "rdp", "min-cohort": 3, "release-evaluation": True, "allow-synthesis": True,
        "allow-class-balance": False,
    }  # total-epsilon absent: fail closed, one run's worth
    text = daemon.node_config_text(node)
    assert 'site="cleveland"' in text and "epsilon=5.0" in text and "require-secagg=false" in text
    argv = daemon.supernode_argv(cfg, 45678)
    assert argv[argv.index("--root-certificates") + 1] == str(pki_dir / "ca.pem")
    assert argv[argv.index("--auth-supernode-private-key") + 1] == str(pki_dir / "cleveland.key")
    assert argv[argv.index("--port") + 1] == "45678" and "--insecure" not in argv
    assert argv[argv.index("--max-wait-time") + 1] == "60"


def test_site_toml_problems_are_all_reported(tmp_path: Path, pki_dir: Path) -> None:
    path = site_toml(tmp_path, pki_dir, site="devise = \"cpu\"", data='dataset = "heart-disease"\npath = "x.csv"\n',
                     privacy="epsilon = -1.0\ndelta = 2.0\n")
    with pytest.raises(ConfigError) as info:
        load_site_config(path)
    text = info.value.message
    assert "[site] devise is not a known key (did you mean 'device'" in text
    assert "[data] needs exactly one of" in text
    assert "[privacy] epsilon=-1.0 must be a positive number" in text and "[privacy] delta=2.0 must be in (0, 1)" in text
    path = site_toml(tmp_path, pki_dir, privacy='epsilon = "five"\n')
    with pytest.raises(ConfigError, match=r'\[privacy\] epsilon = .five. must be a number(.|\n)*\[privacy\] delta is missing'):
        load_site_config(path)


def test_site_key_problems_are_security_errors(tmp_path: Path, pki_dir: Path) -> None:
    other = pki.create_node_identity(tmp_path / "other", "hungary")
    sec = (f'[tls]\nca-cert = "{tmp_path / "no-ca.pem"}"\n[identity]\nprivate-key = "{pki_dir / "cleveland.key"}"\n')
    with pytest.raises(SecurityError, match=r"\[tls\] ca-cert .*no-ca.pem cannot be read"):
        load_site_config(site_toml(tmp_path, pki_dir, security=sec))
    sec = (f'[tls]\nca-cert = "{pki_dir / "ca.pem"}"\n[identity]\nprivate-key = "{pki_dir / "cleveland.key"}"\n'
           f'public-key = "{other.public_key}"\n')
    with pytest.raises(SecurityError, match="is not the public half"):
        load_site_config(site_toml(tmp_path, pki_dir, security=sec))
    os.chmod(other.private_key, 0o640)
    sec = f'[tls]\nca-cert = "{pki_dir / "ca.pem"}"\n[identity]\nprivate-key = "{other.private_key}"\n'
    with pytest.raises(SecurityError, match="readable by other users") as info:
        load_site_config(site_toml(tmp_path, pki_dir, security=sec))
    assert "chmod 600" in info.value.fix


def test_site_insecure_flag_warnings_and_argv(tmp_path: Path, pki_dir: Path, monkeypatch) -> None:
    path = site_toml(tmp_path, pki_dir, security="")
    with pytest.raises(ConfigError, match="--insecure"):
        load_site_config(path)
    cfg = load_site_config(path, insecure=True)
    argv = daemon.supernode_argv(cfg, 1234)
    assert "--insecure" in argv and "--root-certificates" not in argv and "--auth-supernode-private-key" not in argv
    calls = []
    monkeypatch.setattr(daemon, "run_daemon", lambda config: calls.append(config) or 0)
    result = runner.invoke(app, ["client", "start", "--site-config", str(path)])
    assert result.exit_code == 2 and not calls
    result = runner.invoke(app, ["client", "start", "--site-config", str(path), "--insecure"])
    assert result.exit_code == 0, result.output
    assert "warning: this hospital connects WITHOUT TLS" in result.stderr
    assert "warning: node authentication is OFF" in result.stderr


@pytest.mark.parametrize(
    "path",
    sorted(p for p in (REPO / "deploy").rglob("*.toml") if p.name != "server.toml"),
    ids=lambda p: str(p.relative_to(REPO)),
)
def test_shipped_site_tomls_use_only_known_keys(path: Path) -> None:
    cfg = load_site_config(path, check_files=False)
    assert not cfg.insecure and cfg.require_secagg and cfg.private_key is not None


def test_site_toml_privacy_policy_keys_become_the_sites_policy(tmp_path: Path, pki_dir: Path) -> None:
    privacy = ('mode = "sample-dp"\nallow-modes = ["sample-dp", "client-dp"]\nepsilon = 4.0\ntotal-epsilon = 12.0\n'
               'delta = 1e-5\nmax-grad-norm = 0.8\naccountant = "prv"\nmin-cohort = 5\nrelease-evaluation = false\n'
               'allow-synthesis = false\n')
    cfg = load_site_config(site_toml(tmp_path, pki_dir, site="require-secagg = true", privacy=privacy))
    policy = cfg.policy()
    assert (policy.mode, policy.allowed_modes, policy.epsilon, policy.total_epsilon, policy.delta) == (
        "sample-dp", ("sample-dp", "client-dp"), 4.0, 12.0, 1e-5)
    assert (policy.max_grad_norm, policy.accountant, policy.min_cohort) == (0.8, "prv", 5)
    assert policy.require_secagg and not policy.release_evaluation and not policy.allow_synthesis
    node = cfg.node_config()
    assert node["allow-modes"] == "sample-dp,client-dp" and node["total-epsilon"] == 12.0
    assert node["release-evaluation"] is False and node["min-cohort"] == 5 and node["allow-synthesis"] is False
    assert 'allow-modes="sample-dp,client-dp"' in daemon.node_config_text(node)


def test_site_toml_without_total_epsilon_fails_closed(tmp_path: Path, pki_dir: Path) -> None:
    cfg = load_site_config(site_toml(tmp_path, pki_dir))
    assert cfg.total_epsilon is None and cfg.policy().total_epsilon == cfg.epsilon == 5.0
    assert cfg.policy().allowed_modes == ("sample-dp",)


def test_site_toml_policy_problems_are_all_reported(tmp_path: Path, pki_dir: Path) -> None:
    privacy = ('epsilon = 5.0\ndelta = 1e-4\nmode = "client-dp"\nallow-modes = "sample-dp"\nmin-cohort = 1\n'
               'accountant = "moments"\ntotal-epsilon = -2.0\nallow-mode = ["none"]\nrelease-evaluation = "no"\n')
    with pytest.raises(ConfigError) as info:
        load_site_config(site_toml(tmp_path, pki_dir, privacy=privacy))
    text = info.value.message
    assert "[privacy] allow-mode is not a known key (did you mean 'allow-modes'" in text
    assert "[privacy] allow-modes = 'sample-dp' must be a list of mode names" in text
    assert "[privacy] min-cohort=1 must be a whole number >= 2" in text
    assert "[privacy] accountant='moments' is unknown" in text
    assert "[privacy] total-epsilon=-2.0 must be a positive number" in text
    assert "[privacy] release-evaluation = 'no' must be true or false" in text
    privacy = 'epsilon = 5.0\ndelta = 1e-4\nmode = "client-dp"\nallow-modes = ["sample-dp", "nope"]\n'
    with pytest.raises(ConfigError) as info:
        load_site_config(site_toml(tmp_path, pki_dir, privacy=privacy))
    assert "'nope'" in info.value.message and "mode='client-dp' is not in allow-modes" in info.value.message
