#!/usr/bin/env python3
"""The test cluster's DNS (CoreDNS is not packaged in Debian): answers Service and pod names of
the cluster domain from the API server, and nothing else (the test node reaches no outside).

  cluster-dns.py --listen IP:PORT --server URL --token-file FILE --ca FILE [--domain cluster.local]

- <service>.<ns>.svc.<domain>: the ClusterIP (A), the ExternalName (CNAME, followed when it is
  in the cluster domain), or for a headless Service its ready endpoints' addresses;
- <hostname>.<service>.<ns>.svc.<domain>: a StatefulSet pod behind a headless Service;
- anything else: NXDOMAIN.
The API is read every second (lists of Services and Endpoints); answers carry a 1 s TTL.
"""
import argparse
import json
import ssl
import threading
import time
import urllib.request

from dnslib import CNAME, QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSServer


class Cluster:
    def __init__(self, server, token, ca):
        self.server = server
        self.token = token
        self.context = ssl.create_default_context(cafile=ca)
        self.services = {}
        self.endpoints = {}
        self.lock = threading.Lock()

    def get(self, path):
        request = urllib.request.Request(self.server + path, headers={"Authorization": "Bearer " + self.token})
        with urllib.request.urlopen(request, context=self.context, timeout=5) as response:
            return json.load(response)

    def refresh(self):
        services = {
            (s["metadata"]["namespace"], s["metadata"]["name"]): s["spec"] for s in self.get("/api/v1/services")["items"]
        }
        endpoints = {}
        for e in self.get("/api/v1/endpoints")["items"]:
            by_host, addresses = {}, []
            for subset in e.get("subsets") or []:
                for address in subset.get("addresses") or []:
                    addresses.append(address["ip"])
                    if address.get("hostname"):
                        by_host[address["hostname"]] = address["ip"]
            endpoints[(e["metadata"]["namespace"], e["metadata"]["name"])] = (addresses, by_host)
        with self.lock:
            self.services, self.endpoints = services, endpoints

    def run(self):
        while True:
            try:
                self.refresh()
            except Exception as error:  # the API server restarting: keep the last answers
                print(f"cluster-dns: refresh failed: {error}", flush=True)
            time.sleep(1)


class Resolver(BaseResolver):
    def __init__(self, cluster, domain):
        self.cluster = cluster
        self.suffix = ["svc"] + domain.strip(".").split(".")

    def records(self, name, depth=0):
        """The records for `name` (a list of labels), or None when it does not exist."""
        labels = [label.lower() for label in name]
        if depth > 4 or labels[-len(self.suffix):] != self.suffix:
            return None
        head = labels[: -len(self.suffix)]
        with self.cluster.lock:
            if len(head) == 2:
                service, namespace = head
                spec = self.cluster.services.get((namespace, service))
                if spec is None:
                    return None
                if spec.get("type") == "ExternalName":
                    target = spec["externalName"].rstrip(".")
                    return [("CNAME", target)]
                if spec.get("clusterIP") not in (None, "", "None"):
                    return [("A", spec["clusterIP"])]
                addresses, _ = self.cluster.endpoints.get((namespace, service), ([], {}))
                return [("A", ip) for ip in addresses]
            if len(head) == 3:
                host, service, namespace = head
                _, by_host = self.cluster.endpoints.get((namespace, service), ([], {}))
                return [("A", by_host[host])] if host in by_host else None
        return None

    def resolve(self, request, handler):
        reply = request.reply()
        question = request.q
        name = str(question.qname).rstrip(".")
        records = self.records(name.split("."))
        if records is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for kind, value in records:
            if kind == "CNAME":
                reply.add_answer(RR(question.qname, QTYPE.CNAME, rdata=CNAME(value), ttl=1))
                followed = self.records(value.split("."), 1)
                for inner_kind, inner_value in followed or []:
                    if inner_kind == "A" and question.qtype in (QTYPE.A, QTYPE.ANY):
                        reply.add_answer(RR(value, QTYPE.A, rdata=A(inner_value), ttl=1))
            elif question.qtype in (QTYPE.A, QTYPE.ANY):
                reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(value), ttl=1))
        return reply


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--domain", default="cluster.local")
    args = parser.parse_args()
    with open(args.token_file) as f:
        token = f.read().strip()
    cluster = Cluster(args.server, token, args.ca)
    cluster.refresh()
    threading.Thread(target=cluster.run, daemon=True).start()
    address, port = args.listen.rsplit(":", 1)
    resolver = Resolver(cluster, args.domain)
    servers = [DNSServer(resolver, address=address, port=int(port), tcp=tcp) for tcp in (False, True)]
    for server in servers:
        server.start_thread()
    print(f"cluster-dns: serving {args.domain} on {args.listen}", flush=True)
    while all(server.isAlive() for server in servers):
        time.sleep(1)


if __name__ == "__main__":
    main()
