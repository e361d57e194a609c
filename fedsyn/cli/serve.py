"""``fedsyn serve``: run one rep3 computing server of a deployment."""

from __future__ import annotations

import click

from ._options import echo


@click.command(name="serve")
@click.option("--id", "index", required=True, type=click.IntRange(0, 2), help="This server's index (0, 1 or 2).")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Deployment file (parties/*.toml): addresses, certificates, timeouts.")
@click.option("--bundles", "bundles", required=True, multiple=True, type=click.Path(exists=True),
              help="This server's share bundles: files or directories (repeat for several).")
@click.option("--params", "params_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="params.json with the run's public protocol parameters (same on all servers).")
@click.option("-o", "--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Directory for server<i>.stats.json (timings and bytes; no data).")
@click.pass_context
def command(ctx, index, config_path, bundles, params_path, out_dir):
    """Run computing server --id of a three-server deployment.

    Validates this server's bundles, connects to the two other servers over
    mutually authenticated TLS, runs the secure protocol and sends this
    server's output shares to the release server only. Exits non-zero with a
    clear message if a bundle is refused or a peer fails or times out.
    """
    from ..bundle import find_bundles
    from ..engines.rep3.config import load_config
    from ..engines.rep3.server import load_params, run_server

    config = load_config(config_path)
    params = load_params(params_path)
    paths = find_bundles(bundles, party=index)
    result = run_server(index, config, paths, params, out_dir=out_dir)
    echo(ctx, f"server {index}: done in {result.seconds:.1f} s, {result.bytes_sent} bytes sent, "
              f"{result.n_records} records from {len(result.holders)} holder(s)")
