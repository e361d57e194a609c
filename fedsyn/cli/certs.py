"""``fedsyn certs``: a deployment CA and certificates for the servers and the release server."""

from __future__ import annotations

import click

from ._options import echo


@click.command(name="certs")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for ca.pem/ca.key, server{0,1,2}.pem/.key, release.pem/.key.")
@click.option("--hosts", nargs=3, default=None, metavar="H0 H1 H2",
              help="Host names or IPs of servers 0, 1, 2 (added to the certificates as extra names).")
@click.option("--release-host", default=None, help="Host name or IP of the release server.")
@click.option("--days", type=click.IntRange(min=1), default=365, show_default=True, help="Validity in days.")
@click.option("--force", "--overwrite", "force", is_flag=True,
              help="Replace certificates and keys that fedsyn wrote there earlier (never other files).")
@click.pass_context
def command(ctx, out_dir, hosts, release_host, days, force):
    """Create a per-deployment CA and TLS certificates (keys written with mode 0600).

    Peers check the role names fedsyn-server-0/1/2 and fedsyn-release, not
    host addresses. Deployment files resolve their paths relative to
    themselves: for parties/local.toml or parties/three-hosts.toml, write the
    certificates with --out parties/certs. Give each party only its own .key file; keep ca.key
    offline. See docs/deployment.md for the openssl equivalent, where each
    party keeps its key to itself.
    """
    from pathlib import Path

    from ..atomic import output_files
    from ..certs import generate_deployment_certs

    names = ["ca"] + [f"server{i}" for i in range(3)] + ["release"]
    targets = [Path(out_dir) / f"{n}.{ext}" for n in names for ext in ("pem", "key")]
    with output_files(targets, overwrite=force):
        c = generate_deployment_certs(out_dir, hosts=list(hosts) if hosts else None,
                                      release_host=release_host, days=days, overwrite=True)
    echo(ctx, f"CA: {c.ca_cert}")
    for i, (cert, key) in enumerate(zip(c.server_certs, c.server_keys)):
        echo(ctx, f"server {i}: {cert} {key}")
    echo(ctx, f"release: {c.release_cert} {c.release_key}")
