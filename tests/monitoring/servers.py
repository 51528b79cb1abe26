"""Real Prometheus and Pushgateway servers (Debian's packages) on loopback ports, for tests."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "prometheus.yml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def binaries() -> tuple[str, str] | None:
    prom, gw = shutil.which("prometheus"), shutil.which("prometheus-pushgateway")
    return (prom, gw) if prom and gw else None


class Servers:
    """A Pushgateway and a Prometheus scraping it and a loader endpoint every second.

    The scrape config is the example in deploy/prometheus/prometheus.yml with its targets moved
    to this test's loopback ports.
    """

    def __init__(self, tmp: Path, loader_port: int) -> None:
        prom, gw = binaries()
        self.gw_port, self.prom_port = free_port(), free_port()
        self.gateway = f"127.0.0.1:{self.gw_port}"
        cfg = yaml.safe_load(EXAMPLE_CONFIG.read_text())
        cfg["global"]["scrape_interval"] = "1s"
        cfg["global"]["evaluation_interval"] = "1s"
        targets = {"winnow_pushgateway": self.gateway, "winnow_loader": f"127.0.0.1:{loader_port}"}
        for job in cfg["scrape_configs"]:
            job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        self.config = tmp / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.logs = [(tmp / "pushgateway.log").open("w"), (tmp / "prometheus.log").open("w")]
        self.procs = [
            subprocess.Popen([gw, f"--web.listen-address=127.0.0.1:{self.gw_port}"], stdout=self.logs[0], stderr=subprocess.STDOUT),
            subprocess.Popen([prom, f"--config.file={self.config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                              f"--web.listen-address=127.0.0.1:{self.prom_port}"],
                             stdout=self.logs[1], stderr=subprocess.STDOUT, cwd=tmp),
        ]
        wait_http(f"http://{self.gateway}/-/ready")
        wait_http(f"http://127.0.0.1:{self.prom_port}/-/ready")

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.prom_port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        if body["status"] != "success":
            raise AssertionError(body)
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        return self.api("query", query=promql)["result"]

    def wait_for(self, promql: str, timeout: float = 30.0, check=lambda r: bool(r)) -> list[dict]:
        end = time.monotonic() + timeout
        while True:
            res = self.query(promql)
            if check(res) or time.monotonic() > end:
                return res
            time.sleep(0.5)

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in self.logs:
            f.close()
