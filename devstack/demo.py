"""`make demo`: the local cloud up, sample data in both clouds, the app at work, down.

Shows that one managed identity reaches both clouds: health over HTTP, a token-backed
Azure listing and an STS-federated S3 listing, merged into the combined listing.
"""

from __future__ import annotations

import subprocess
import sys
import time

import requests

from devstack import config, envfile, stack

SAMPLES = {
    "azure": {"reports/2026/q3.csv": b"region,revenue\neu,42\nus,40\n",
              "reports/2026/q4.csv": b"region,revenue\neu,45\nus,47\n",
              "images/logo.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
              "notes/read me.txt": "Grüße aus Azure\n".encode()},
    "s3": {"exports/orders-2026-11.json": b'[{"id": 1}, {"id": 2}]',
           "exports/users.parquet": bytes(range(256)) * 16,
           "notes/read me.txt": b"Greetings from S3\n"},
}


def seed(values: dict[str, str]) -> None:
    import boto3
    from azure.storage.blob import ContainerClient

    container = ContainerClient.from_connection_string(
        values["DEVSTACK_AZURE_CONNECTION_STRING"], config.CONTAINER,
        connection_verify=values["REQUESTS_CA_BUNDLE"])
    for key, body in SAMPLES["azure"].items():
        container.upload_blob(key, body, overwrite=True)
    s3 = boto3.client("s3", endpoint_url=values["AWS_ENDPOINT_URL_S3"], region_name=values["AWS_REGION"],
                      aws_access_key_id=values["DEVSTACK_AWS_ADMIN_ACCESS_KEY_ID"],
                      aws_secret_access_key=values["DEVSTACK_AWS_ADMIN_SECRET_ACCESS_KEY"])
    for key, body in SAMPLES["s3"].items():
        s3.put_object(Bucket=values["S3_BUCKET"], Key=key, Body=body)
    print(f"seeded {len(SAMPLES['azure'])} blobs and {len(SAMPLES['s3'])} S3 objects (admin access)")


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(*args: str) -> None:
    subprocess.run([sys.executable, "-m", *args], check=True)


def main() -> int:
    step("local cloud up")
    already_running = bool(stack.running())
    stack.up()
    server = None
    try:
        values = envfile.apply()
        step("seed sample objects in both clouds")
        seed(values)
        step("health over HTTP (python -m devstack serve, as func start would)")
        server = subprocess.Popen([sys.executable, "-m", "devstack", "serve"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        url = values["DEVSTACK_FUNCTIONS_URL"]
        for _ in range(100):
            try:
                print(requests.get(f"{url}/api/health", timeout=2).json())
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        step("one managed identity, both clouds: the combined listing (python -m crosscloud list)")
        run("crosscloud", "list")
        step("backup: Azure container -> S3 prefix backup/, same identity (python -m crosscloud backup)")
        run("crosscloud", "backup")
        step("the backup prefix in S3 (python -m crosscloud list --source s3 --prefix backup/)")
        run("crosscloud", "list", "--source", "s3", "--prefix", "backup/")
        stats = requests.get(values["DEVSTACK_STATS_URL"], timeout=5).json()
        print(f"identity endpoint tokens: storage={stats.get('token:' + config.STORAGE_RESOURCE, 0)}, "
              f"AWS audience={stats.get('token:' + config.AUDIENCE, 0)}; "
              f"STS AssumeRoleWithWebIdentity calls={stats.get('aws:AssumeRoleWithWebIdentity:ok', 0)}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        if already_running:
            step("local cloud left running (it was up before the demo)")
        else:
            step("local cloud down")
            stack.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
