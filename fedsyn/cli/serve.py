"""``fedsyn serve``: run one computing server of a deployment (rep3 or an MP-SPDZ party)."""

from __future__ import annotations

import click

from ._options import echo


@click.command(name="serve")
@click.option("--id", "index", required=True, type=click.IntRange(0, 2), help="This server's index (0, 1 or 2).")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Deployment file (parties/*.toml): addresses, certificates, timeouts.")
@click.option("--bundles", "bundles", required=True, multiple=True, type=click.Path(exists=True),
              help="This server's inputs (repeat for several): rep3: share bundles (files or directories); "
                   "mp-spdz: holder directories from `fedsyn share --format mp-spdz` (manifest.json and "
                   "Transactions-P<id>.data), or directories of them.")
@click.option("--params", "params_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="params.json written by `fedsyn plan` (same file on all servers): protocol parameters "
                   "and the privacy plan, checked against the bundles before anything is computed.")
@click.option("--engine", type=click.Choice(["rep3", "mp-spdz"]), default="rep3", show_default=True,
              help="rep3: the embedded engine; mp-spdz: an MP-SPDZ party binary (needs MP_SPDZ_HOME). "
                   "All three servers must use the same.")
@click.option("--security", type=click.Choice(["passive", "active"]), default=None,
              help="mp-spdz only: replicated-ring-party.x (passive, the default) or malicious-rep-ring-party.x "
                   "(active). The same on all three servers.")
@click.option("--workdir", default=None, type=click.Path(file_okay=False),
              help="mp-spdz only: the party's run directory, kept (logs, hosts file, certificates; shares and "
                   "keys are deleted) [default: a temporary directory].")
@click.option("-o", "--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Directory for server<i>.stats.json (timings and bytes; no data).")
@click.option("--ledger", "ledger_path", default=None, type=click.Path(dir_okay=False),
              help="This server's privacy-budget ledger (JSON lines) [default: "
                   "$XDG_STATE_HOME/fedsyn/ledger-server<i>.jsonl].")
@click.option("--allow-reuse", is_flag=True,
              help="Run bundles the ledger has seen before: spends their privacy budget again.")
@click.option("--insecure-no-noise", is_flag=True,
              help="Accept params without noise (exact counts are released). NOT PRIVATE: testing engines only.")
@click.pass_context
def command(ctx, index, config_path, bundles, params_path, engine, security, workdir, out_dir, ledger_path,
            allow_reuse, insecure_no_noise):
    """Run computing server --id of a three-server deployment.

    Validates this server's inputs and the privacy plan in --params (shapes,
    noise, epsilon recomputed), records the run in the privacy-budget ledger
    (refusing inputs used before unless --allow-reuse), connects to the two
    other servers over mutually authenticated TLS, runs the secure protocol
    (embedded, or as MP-SPDZ party --id) and sends this server's output
    shares to the release server only. Exits non-zero with a clear message if
    anything is refused or a peer fails.
    """
    from ..engines.rep3.config import load_config
    from ..errors import ConfigError
    from ..ledger import Ledger, default_ledger_path
    from ..params import load_run_params

    if engine == "rep3" and (security not in (None, "passive") or workdir is not None):
        raise ConfigError("--security active and --workdir apply to --engine mp-spdz only (rep3 is passive).")
    config = load_config(config_path)
    run_params = load_run_params(params_path)
    ledger = Ledger(ledger_path if ledger_path is not None else default_ledger_path(index))
    if engine == "mp-spdz":
        from ..engines.mpspdz.server import run_server as run_mpspdz

        result = run_mpspdz(index, config, bundles, run_params, security=security or "passive", out_dir=out_dir,
                            workdir=workdir, ledger=ledger, allow_reuse=allow_reuse,
                            insecure_no_noise=insecure_no_noise)
        echo(ctx, f"server {index}: MP-SPDZ party {index} ({security or 'passive'}) done in {result.seconds:.1f} s, "
                  f"{result.bytes_sent} bytes sent, {result.n_records} records from {len(result.holders)} holder(s)")
        return
    from ..bundle import find_bundles
    from ..engines.rep3.server import run_server

    paths = find_bundles(bundles, party=index)
    result = run_server(index, config, paths, run_params, out_dir=out_dir, ledger=ledger, allow_reuse=allow_reuse,
                        insecure_no_noise=insecure_no_noise)
    echo(ctx, f"server {index}: done in {result.seconds:.1f} s, {result.bytes_sent} bytes sent, "
              f"{result.n_records} records from {len(result.holders)} holder(s)")
