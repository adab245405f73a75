#!/usr/bin/env python3
"""Lint, install or uninstall a Helm chart with helm-sdkpy (the Helm v4 Go library), so the
tests use real Helm without a helm binary.

  helm.py lint CHART
  helm.py install RELEASE CHART --namespace NS --kubeconfig FILE [--values JSON] [--take-ownership]
  helm.py upgrade RELEASE CHART --namespace NS --kubeconfig FILE [--values JSON]
  helm.py uninstall RELEASE --namespace NS --kubeconfig FILE

Prints one JSON object; exits 1 when Helm reports a failure.
"""
import argparse
import asyncio
import json
import sys

import helm_sdkpy

# helm-sdkpy reports lint findings with Helm's severities.
SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def reason(error):
    # helm-sdkpy passes a finding's error through Go's JSON encoding: plain errors arrive as
    # their text, wrapped ones as {} (their text is not exported). Keep what arrives.
    if isinstance(error, str) and error:
        return error
    return "(reason not reported by helm-sdkpy)"


async def lint(args):
    result = await helm_sdkpy.Lint(helm_sdkpy.Configuration()).run(args.chart)
    messages = result.get("Messages") or []
    findings = [
        {
            "severity": SEVERITY.get(m.get("Severity"), "UNKNOWN"),
            "path": m.get("Path"),
            "reason": reason(m.get("Err")),
        }
        for m in messages
    ]
    failed = bool(result.get("Errors")) or any(m.get("Severity", 0) >= 2 for m in messages)
    return not failed, {"findings": findings}


async def install(args):
    config = helm_sdkpy.Configuration(namespace=args.namespace, kubeconfig=args.kubeconfig)
    # wait=False: the test control plane has no scheduler, so pods never become ready; the
    # tests check the objects themselves.
    release = await helm_sdkpy.Install(config).run(
        args.release,
        args.chart,
        values=json.loads(args.values),
        create_namespace=True,
        wait=False,
        timeout=120,
        take_ownership=args.take_ownership,
    )
    info = release.get("info", {}) if isinstance(release, dict) else {}
    return True, {"name": args.release, "status": info.get("status")}


async def upgrade(args):
    config = helm_sdkpy.Configuration(namespace=args.namespace, kubeconfig=args.kubeconfig)
    release = await helm_sdkpy.Upgrade(config).run(
        args.release, args.chart, values=json.loads(args.values), wait=False, timeout=120
    )
    info = release.get("info", {}) if isinstance(release, dict) else {}
    return True, {"name": args.release, "status": info.get("status")}


async def uninstall(args):
    config = helm_sdkpy.Configuration(namespace=args.namespace, kubeconfig=args.kubeconfig)
    await helm_sdkpy.Uninstall(config).run(args.release, wait=False, timeout=120)
    return True, {"name": args.release, "status": "uninstalled"}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("lint")
    p.add_argument("chart")
    p.set_defaults(run=lint)
    for name, run in (("install", install), ("upgrade", upgrade), ("uninstall", uninstall)):
        p = commands.add_parser(name)
        p.add_argument("release")
        if name in ("install", "upgrade"):
            p.add_argument("chart")
            p.add_argument("--values", default="{}")
        if name == "install":
            p.add_argument("--take-ownership", action="store_true")
        p.add_argument("--namespace", required=True)
        p.add_argument("--kubeconfig", required=True)
        p.set_defaults(run=run)
    args = parser.parse_args()
    try:
        ok, output = asyncio.run(args.run(args))
    except helm_sdkpy.HelmError as error:
        ok, output = False, {"error": f"{type(error).__name__}: {error}"}
    print(json.dumps(output))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
