"""Network-namespace tests: register their marker (select them with ``-m netns``)."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "netns: rep3 deployments across Linux network namespaces (root and iproute2; skipped otherwise)"
    )
