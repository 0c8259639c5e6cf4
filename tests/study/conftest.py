"""Fixtures of the study tests: a LocalCluster of 2 worker processes, loopback only, per test module."""
import pytest


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address="127.0.0.1:0", silence_logs=40)
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()
