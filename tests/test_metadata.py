"""Public metadata agreement: who differs, and in what (issue 9)."""

from __future__ import annotations

import logging
import threading

import numpy as np

from fedsyn.engines.rep3.server import agree_on_metadata
from fedsyn.engines.rep3.transport import InProcessNetwork
from fedsyn.errors import ProtocolError
from fedsyn.metadata import describe_genes, metadata_differences, odd_ones


def meta(**changes):
    base = {
        "gene_names": ["g1", "g2", "g3"], "label_names": ["a", "b"], "holders": {"hA": 5, "hB": 6},
        "sharings": [["hA", "s-a"], ["hB", "s-b"]], "n_records": 11, "frac_bits": 16, "run_id": "r1",
        "params": {"sigma": 23.4, "n_labels": 2, "binning": "select"},
    }
    base.update(changes)
    return base


def test_odd_ones_blames_the_minority_not_the_second():
    assert odd_ones(["bad", "ok", "ok"], key=str) == ([1, 2], [0])
    assert odd_ones(["ok", "bad"], key=str) == ([0], [1])


def test_describe_genes_names_the_first_difference():
    assert describe_genes(["g1", "g2"], ["g1", "g2", "g3"]) == "lacks gene 'g3' (2 genes instead of 3)"
    assert "position 1: 'g2' instead of 'g1'" in describe_genes(["g2", "g1"], ["g1", "g2"])
    assert describe_genes(["g2", "g1"], ["g1", "g2"], ordered=False) == ""


def test_metadata_differences_say_which_holder_count_sharing_and_parameter():
    theirs = meta(holders={"hA": 5, "hB": 7}, sharings=[["hA", "s-x"], ["hB", "s-b"]],
                  params={"sigma": 20.0, "n_labels": 2, "binning": "select"}, label_names=["a", "c"])
    diffs = metadata_differences(meta(), theirs, here="at server 0", there="at server 2")
    text = " | ".join(diffs)
    assert "holder 'hB' has 6 samples at server 0, 7 at server 2" in text
    assert "holder 'hA' comes from another `fedsyn share` run" in text
    assert "parameter sigma is 23.4 at server 0, 20.0 at server 2" in text
    assert "label domain differs: at server 2 it lacks label 'b' and has label 'c' instead" in text
    assert metadata_differences(meta(), meta()) == []


def test_servers_refuse_other_public_inputs_naming_the_server_and_field():
    net = InProcessNetwork(timeout=10)
    metas = [meta(), meta(), meta(holders={"hA": 5, "hB": 7})]
    errors: dict[int, BaseException] = {}

    def party(i):
        try:
            agree_on_metadata(i, net.transport(i), metas[i])
        except ProtocolError as exc:
            errors[i] = exc

    threads = [threading.Thread(target=party, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert set(errors) == {0, 1, 2}
    assert "server 0: server 2 holds other public inputs: holder 'hB' has 6 samples at server 0, 7 at server 2" \
        in str(errors[0])
    # the odd server itself says that it is the one that differs (its two peers agree with each other)
    assert ("server 2: this server holds other public inputs than servers 0 and 1: holder 'hB' has 6 samples at "
            "servers 0 and 1, 7 at server 2") in str(errors[2]) and "Nothing was computed" in str(errors[2])


def test_agreeing_servers_pass():
    net = InProcessNetwork(timeout=10)
    done = []
    threads = [threading.Thread(target=lambda i=i: done.append(agree_on_metadata(i, net.transport(i), meta())))
               for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(done) == 3


def test_protocol1_logs_progress_per_gene_block(caplog):
    """Long server runs show progress: one log line per gene block (public indices only, no values)."""
    from fedsyn.engines.rep3.protocol1 import HolderInput, run_protocol1
    from fedsyn.engines.rep3.runtime import Party
    from fedsyn.engines.rep3.sharing import share_array
    from fedsyn.engines.rep3.transport import run_parties
    from fedsyn.fixedpoint import encode
    from fedsyn.params import ProtocolParams

    rng = np.random.default_rng(1)
    x = encode(rng.normal(8, 2, size=(16, 5)))
    onehot = np.eye(2, dtype=np.int64)[rng.integers(0, 2, 16)]
    xs, ys = share_array(x, rng=rng), share_array(onehot, rng=rng)
    params = ProtocolParams(n_labels=2, sigma=0.0, noise=False)

    def server(i, transport):
        party = Party.setup(i, transport, seed=1)
        return run_protocol1(party, [HolderInput(values=xs[i], labels=ys[i])], params, gene_block_elements=32)

    with caplog.at_level(logging.INFO, logger="fedsyn.engines.rep3.protocol1"):
        run_parties(server, network=InProcessNetwork(timeout=60))
    mine = [r.getMessage() for r in caplog.records if r.getMessage().startswith("party 0: paper: gene block")]
    assert mine == ["party 0: paper: gene block 1 of 3 done (genes 1-2 of 5)",
                    "party 0: paper: gene block 2 of 3 done (genes 3-4 of 5)",
                    "party 0: paper: gene block 3 of 3 done (genes 5-5 of 5)"]
