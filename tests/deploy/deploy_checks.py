#!/usr/bin/python3
"""Checks of deploy/ that promtool and systemd-analyze do not do themselves.

usage: deploy_checks.py REPO_ROOT alerts|dashboard|runbook|mutations

  alerts     every alert of CONTRACT §8 is in the rules file with severity, summary, description
             and a runbook annotation whose anchor exists in docs/runbook.md; every alert has a
             promtool test case that fires it and one that does not; every metric the rules use
             is in the metric catalogue and registered by the daemons' sources.
  dashboard  the Grafana dashboard is valid JSON, titled "Cloud Profile Overview", uses the
             ${DS_PROMETHEUS} input everywhere, every query is valid PromQL (promtool) and names
             only catalogued metrics, and the panels the runbook refers to exist.
  runbook    docs/runbook.md keeps every command of the seed runbook, in the same section order.
  mutations  weakening any alert rule makes `promtool test rules` fail (the tests can fail).

Exit status: 0 pass, 1 fail, 77 skipped (an input outside the repository is absent).
Standard library only.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

SKIP = 77

# CONTRACT §8: the alerts the runbook names.
CONTRACT_ALERTS = [
    "NoNodesOnline", "LowNodeAvailability", "NoPoolsAvailable", "HighHealthCheckLatency",
    "HeartbeatFailureRate", "NodeHeartbeatStalled", "HeartbeatStalled",
    "HandoffProcessingStalled", "HighRegistrationFailureRate",
]

# Metric catalogue: CONTRACT §6 as the daemons expose it (docs/metrics.md), plus the per-node
# heartbeat timestamp of docs/cluster.md. `promtool check metrics` rejects abbreviated units and
# `_total` on a gauge, so CONTRACT's _ms histograms are exposed in seconds and its gauge
# pool_slots_total as pool_slots_capacity (exposed_name() maps one spelling to the other).
CATALOGUE = {
    "orchd_nodes_online": "gauge",
    "orchd_pools_available": "gauge",
    "orchd_node_registrations_total": "counter",
    "orchd_node_heartbeats_total": "counter",
    "orchd_node_deregistrations_total": "counter",
    "orchd_node_last_heartbeat_timestamp_seconds": "gauge",
    "orchd_pool_health_checks_total": "counter",
    "orchd_pool_health_check_duration_seconds": "histogram",
    "orchd_admission_queue_depth": "gauge",
    "orchd_tasks_total": "counter",
    "orchd_task_first_token_seconds": "histogram",
    "orchd_task_duration_seconds": "histogram",
    "orchd_placement_decisions_total": "counter",
    "pool_ready": "gauge",
    "pool_slots_capacity": "gauge",
    "pool_slots_free": "gauge",
    "pool_vram_free_bytes": "gauge",
    "pool_engine_restarts_total": "counter",
    "pool_handoff_files_processed_total": "counter",
    "pool_handoff_processing_duration_seconds": "histogram",
    "pool_tokens_out_total": "counter",
}
# Series Prometheus makes itself.
SYNTHETIC = {"up"}


RENAMED = {"pool_slots_total": "pool_slots_capacity"}


def exposed_name(contract_name):
    if contract_name in RENAMED:
        return RENAMED[contract_name]
    return contract_name[:-3] + "_seconds" if contract_name.endswith("_ms") else contract_name


failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# ---- PromQL ----------------------------------------------------------------------------------
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on",
            "ignoring", "group_left", "group_right"}


def metric_names(expr):
    """The metric names a PromQL expression selects (functions, labels and keywords removed)."""
    e = re.sub(r"\$__\w+|\$\{[^}]*\}|\$\w+", "5m", expr)
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', "", e)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"[A-Za-z_][A-Za-z0-9_]*\s*\(", "(", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", e):
        if m.group(0).lower() not in KEYWORDS:
            names.add(m.group(0))
    return names


def catalogued(name):
    """The catalogue entry a selected name belongs to, or None."""
    if name in CATALOGUE or name in SYNTHETIC:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and CATALOGUE.get(name[: -len(suffix)]) == "histogram":
            return name[: -len(suffix)]
    return None


def promql_valid(exprs):
    """Runs every expression through `promtool check rules` as a recording rule."""
    rules = {"groups": [{"name": "check", "rules": [
        {"record": "check:expr_%d" % i, "expr": e} for i, e in enumerate(exprs)]}]}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "exprs.yml")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(rules, f)  # JSON is valid YAML
        r = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True)
        return r.returncode == 0, r.stdout + r.stderr


def source_registrations(root):
    """Metric names the C++ sources register (string literals in actors/, runtime/, net/,
    engines/), or None when no source registers any metric yet."""
    found = set()
    pattern = re.compile(r'"((?:orchd|pool)_[a-z0-9_]+)"')
    for top in ("actors", "runtime", "net", "engines"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for fn in files:
                if fn.endswith((".cpp", ".hpp")):
                    found.update(pattern.findall(read(os.path.join(dirpath, fn))))
    return found or None


# ---- rule file (a fixed, simple YAML layout: parsed by blocks, not a general YAML parser) -------
def parse_rules(text):
    alerts = {}
    blocks = re.split(r"\n(?=\s*- alert:)", text)
    for b in blocks[1:]:
        name = re.match(r"\s*- alert:\s*(\S+)", b).group(1)
        if name in alerts:
            fail("alert %s is defined twice" % name)
        expr = re.search(r"\n\s*expr:\s*(\|?)(.*?)\n\s*(?:for|labels):", b, re.S)
        alerts[name] = {
            "expr": expr.group(2) if expr else "",
            "severity": (re.search(r"\n\s*severity:\s*(\S+)", b) or [None, None])[1],
            "summary": bool(re.search(r"\n\s*summary:\s*\S", b)),
            "description": bool(re.search(r"\n\s*description:\s*\S", b)),
            "runbook": (re.search(r"\n\s*runbook:\s*(\S+)", b) or [None, None])[1],
        }
    return alerts


def parse_rule_tests(text):
    """alertname -> (number of cases expecting alerts, number expecting none)."""
    cases = {}
    for b in re.split(r"\n(?=\s*- eval_time:)", text)[1:]:
        m = re.search(r"\n\s*alertname:\s*(\S+)", b)
        if not m:
            continue
        fires, quiet = cases.get(m.group(1), (0, 0))
        if re.search(r"\n\s*exp_alerts:\s*\[\s*\]", b):
            quiet += 1
        elif re.search(r"\n\s*exp_alerts:\s*\n\s*- exp_labels:", b):
            fires += 1
        cases[m.group(1)] = (fires, quiet)
    return cases


def contract_alerts(root):
    path = os.path.join(root, "..", "shared", "CONTRACT.md")
    if not os.path.exists(path):
        return None
    section = re.search(r"## 8\..*?(?=\n## |\Z)", read(path), re.S)
    if not section:
        fail("CONTRACT.md has no section 8")
        return []
    paren = re.search(r"\(([^)]*)\)", section.group(0))
    return re.findall(r"[A-Z][A-Za-z]+", paren.group(1)) if paren else []


def check_catalogue(root):
    """Every metric CONTRACT §6 names is in the catalogue (under its exposed name)."""
    path = os.path.join(root, "..", "shared", "CONTRACT.md")
    if not os.path.exists(path):
        print("note: ../shared/CONTRACT.md absent, catalogue not compared with §6")
        return
    section = re.search(r"## 6\..*?(?=\n## |\Z)", read(path), re.S)
    names = re.findall(r"`((?:orchd|pool)_[a-z0-9_]+)", section.group(0)) if section else []
    if not names:
        fail("CONTRACT.md §6 names no metric")
    for n in names:
        if exposed_name(n) not in CATALOGUE:
            fail("CONTRACT §6 metric %s is not in the catalogue" % n)


def check_alerts(root):
    check_catalogue(root)
    prom = os.path.join(root, "deploy", "prometheus")
    alerts = parse_rules(read(os.path.join(prom, "llama-orch-alerts.yml")))
    tests = parse_rule_tests(read(os.path.join(prom, "llama-orch-alerts.test.yml")))
    runbook_path = os.path.join(root, "docs", "runbook.md")
    runbook = read(runbook_path) if os.path.exists(runbook_path) else ""
    if not runbook:
        fail("docs/runbook.md is missing")

    names = list(CONTRACT_ALERTS)
    from_contract = contract_alerts(root)
    if from_contract is None:
        print("note: ../shared/CONTRACT.md absent, using the alert list of CONTRACT §8 built in")
    else:
        for n in from_contract:
            if n not in names:
                names.append(n)
        print("CONTRACT §8 names %d alerts" % len(from_contract))

    for n in names:
        if n not in alerts:
            fail("alert %s (CONTRACT §8) is not in llama-orch-alerts.yml" % n)
    for n, a in alerts.items():
        if a["severity"] not in ("critical", "warning"):
            fail("%s: severity label is %r, expected critical or warning" % (n, a["severity"]))
        if not a["summary"] or not a["description"]:
            fail("%s: needs both summary and description annotations" % n)
        rb = a["runbook"] or ""
        m = re.fullmatch(r"docs/runbook\.md#([a-z0-9-]+)", rb)
        if not m:
            fail("%s: runbook annotation %r is not docs/runbook.md#<anchor>" % (n, rb))
        elif runbook and not re.search(r'id="%s"' % re.escape(m.group(1)), runbook):
            fail("%s: anchor #%s does not exist in docs/runbook.md" % (n, m.group(1)))
        fires, quiet = tests.get(n, (0, 0))
        if fires == 0 or quiet == 0:
            fail("%s: promtool tests have %d firing and %d quiet cases, need at least 1 each"
                 % (n, fires, quiet))
        used = metric_names(a["expr"])
        if not used:
            fail("%s: no metric found in its expression" % n)
        for metric in used:
            if catalogued(metric) is None:
                fail("%s: metric %s is not in the metric catalogue" % (n, metric))
        a["metrics"] = {catalogued(m) for m in used} - SYNTHETIC - {None}

    registered = source_registrations(root)
    if registered is None:
        print("note: no daemon source registers metrics yet; source cross-check not run")
    else:
        for n, a in alerts.items():
            for metric in sorted(a.get("metrics", ())):
                if metric not in registered:
                    fail("%s: watches %s, which no daemon source registers" % (n, metric))
    print("%d alerts, %d with firing and quiet test cases" %
          (len(alerts), sum(1 for f, q in tests.values() if f and q)))


# ---- dashboard -------------------------------------------------------------------------------
RUNBOOK_PANELS = {  # what the runbook looks at -> a metric some panel must show
    "nodes online": "orchd_nodes_online",
    "pools available": "orchd_pools_available",
    "heartbeat rate by outcome": "orchd_node_heartbeats_total",
    "health-check latency": "orchd_pool_health_check_duration_seconds",
    "registrations by outcome": "orchd_node_registrations_total",
    "handoff processing": "pool_handoff_files_processed_total",
    "queue depth": "orchd_admission_queue_depth",
    "tasks by outcome": "orchd_tasks_total",
}


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def check_dashboard(root):
    path = os.path.join(root, "deploy", "grafana", "cloud_profile_overview.json")
    try:
        dash = json.loads(read(path))
    except (OSError, ValueError) as e:
        fail("%s is not valid JSON: %s" % (path, e))
        return
    check_catalogue(root)
    if dash.get("title") != "Cloud Profile Overview":
        fail("title is %r" % dash.get("title"))
    inputs = [i for i in dash.get("__inputs", []) if i.get("name") == "DS_PROMETHEUS"]
    if not inputs or inputs[0].get("pluginId") != "prometheus":
        fail("no DS_PROMETHEUS datasource input of type prometheus")
    ids, exprs, shown = set(), [], set()
    for p in all_panels(dash.get("panels", [])):
        pid = p.get("id")
        if pid in ids:
            fail("panel id %r used twice" % pid)
        ids.add(pid)
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in "xywh") or g["x"] + g["w"] > 24:
            fail("panel %r (%s): gridPos %r is not inside the 24-column grid" % (pid, p.get("title"), g))
        if p.get("type") == "row":
            continue
        if not p.get("title"):
            fail("panel %r has no title" % pid)
        targets = p.get("targets", [])
        if not targets:
            fail("panel %r (%s) has no query" % (pid, p.get("title")))
        for t in [p] + targets:
            ds = t.get("datasource")
            if ds is not None and ds.get("uid") != "${DS_PROMETHEUS}":
                fail("panel %r: datasource %r is not ${DS_PROMETHEUS}" % (pid, ds))
        for t in targets:
            expr = t.get("expr", "")
            if t.get("datasource") is None:
                fail("panel %r query %s has no datasource" % (pid, t.get("refId")))
            exprs.append(re.sub(r"\$__\w+", "5m", expr))
            names = metric_names(expr)
            if not names:
                fail("panel %r query %r selects no metric" % (pid, expr))
            for n in names:
                c = catalogued(n)
                if c is None or c in SYNTHETIC:
                    fail("panel %r (%s): metric %s is not in CONTRACT §6 or the catalogue"
                         % (pid, p.get("title"), n))
                else:
                    shown.add(c)
    ok, out = promql_valid(exprs)
    if not ok:
        fail("dashboard queries are not all valid PromQL:\n" + out)
    for what, metric in RUNBOOK_PANELS.items():
        if metric not in shown:
            fail("no panel shows %s (%s)" % (what, metric))
    registered = source_registrations(root)
    if registered is not None:
        later = sorted(m for m in shown if m not in registered)
        if later:
            print("note: shown but not registered by any daemon source yet: " + ", ".join(later))
    print("%d panels (rows included), %d queries, %d metrics" % (len(ids), len(exprs), len(shown)))


# ---- runbook ---------------------------------------------------------------------------------
def commands(markdown):
    """Command lines of the fenced bash blocks, continuation lines joined, comments dropped."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, re.S):
        joined = re.sub(r"\\\n\s*", "\\\n  ", block)
        for cmd in re.split(r"\n(?!  )", joined):
            cmd = cmd.strip()
            if cmd and not cmd.startswith("#"):
                out.append(cmd)
    return out


def check_runbook(root):
    seed_path = os.path.join(root, "..", "shared", "seed", "CLOUD_PROFILE_INCIDENTS.md")
    if not os.path.exists(seed_path):
        print("skip: %s absent" % seed_path)
        return SKIP
    ours_path = os.path.join(root, "docs", "runbook.md")
    if not os.path.exists(ours_path):
        fail("docs/runbook.md is missing")
        return 1
    seed, ours = read(seed_path), read(ours_path)
    seed_cmds, our_cmds = commands(seed), set(commands(ours))
    for c in seed_cmds:
        if c not in our_cmds:
            fail("seed runbook command missing from docs/runbook.md:\n    " + c)
    seed_sections = re.findall(r"^### (.+)$", seed, re.M)
    our_sections = re.findall(r"^### (.+)$", ours, re.M)
    positions = []
    for s in seed_sections:
        if s not in our_sections:
            fail("section '### %s' missing from docs/runbook.md" % s)
        else:
            positions.append(our_sections.index(s))
    if positions != sorted(positions):
        fail("docs/runbook.md does not keep the seed's section order")
    print("%d seed commands, %d sections checked" % (len(seed_cmds), len(seed_sections)))
    return 0


# ---- mutations -------------------------------------------------------------------------------
# Each mutation weakens or breaks one rule; the promtool tests must notice every one.
MUTATIONS = [
    ("NoNodesOnline ignores the absent series", "(absent(orchd_nodes_online)", "(absent(orchd_nodes_online_x)"),
    ("NoNodesOnline fires while orchestratord is down", 'max(up{job="orchestratord"}) == 1', 'max(up{job="orchestratord"}) >= 0'),
    ("LowNodeAvailability threshold 1", "sum(orchd_nodes_online) < 2", "sum(orchd_nodes_online) < 1"),
    ("NoPoolsAvailable threshold", "sum(orchd_pools_available) == 0", "sum(orchd_pools_available) < 0"),
    ("HighHealthCheckLatency p99", "histogram_quantile(0.95,", "histogram_quantile(0.5,"),
    ("HighHealthCheckLatency in ms", "))) > 0.1", "))) > 100"),
    ("HeartbeatFailureRate ignores missed", 'orchd_node_heartbeats_total{outcome!="success"}[5m]', 'orchd_node_heartbeats_total{outcome!~"success|missed"}[5m]'),
    ("HeartbeatFailureRate 30 %", "sum(rate(orchd_node_heartbeats_total[5m])) > 0.1", "sum(rate(orchd_node_heartbeats_total[5m])) > 0.3"),
    ("NodeHeartbeatStalled 5 minutes", "orchd_node_last_heartbeat_timestamp_seconds > 120", "orchd_node_last_heartbeat_timestamp_seconds > 300"),
    ("HeartbeatStalled without vector(0)", " or vector(0))", ")"),
    ("HeartbeatStalled counts any outcome", 'increase(orchd_node_heartbeats_total{outcome="success"}[2m])', "increase(orchd_node_heartbeats_total[2m])"),
    ("HandoffProcessingStalled counts rejected files", 'pool_handoff_files_processed_total{outcome!="invalid"}', "pool_handoff_files_processed_total"),
    ("HandoffProcessingStalled joins on pool_id only", "unless on(instance, pool_id)", "unless on(pool_id)"),
    ("HighRegistrationFailureRate 60 %", "sum(increase(orchd_node_registrations_total[10m])) > 0.2", "sum(increase(orchd_node_registrations_total[10m])) > 0.6"),
    ("runbook anchor renamed", "runbook.md#alert-heartbeat-stalled", "runbook.md#heartbeat-stalled"),
    ("severity downgraded", "severity: critical", "severity: warning"),
]


def check_mutations(root):
    prom = os.path.join(root, "deploy", "prometheus")
    rules = read(os.path.join(prom, "llama-orch-alerts.yml"))
    with tempfile.TemporaryDirectory() as d:
        shutil.copy(os.path.join(prom, "llama-orch-alerts.test.yml"), d)
        target = os.path.join(d, "llama-orch-alerts.yml")

        def run(text):
            with open(target, "w", encoding="utf-8") as f:
                f.write(text)
            return subprocess.run(["promtool", "test", "rules", "llama-orch-alerts.test.yml"],
                                  cwd=d, capture_output=True, text=True).returncode

        if run(rules) != 0:
            fail("the unmodified rules do not pass their tests")
            return
        for what, old, new in MUTATIONS:
            if old not in rules:
                fail("mutation '%s': text %r not found in the rules" % (what, old))
            elif run(rules.replace(old, new, 1)) == 0:
                fail("mutation '%s' survived: no test noticed it" % what)
    print("%d mutations, all detected" % len(MUTATIONS))


def main(argv):
    if len(argv) != 3:
        print(__doc__)
        return 2
    root, what = os.path.abspath(argv[1]), argv[2]
    checks = {"alerts": check_alerts, "dashboard": check_dashboard, "runbook": check_runbook,
              "mutations": check_mutations}
    if what not in checks:
        print("unknown check %r (one of %s)" % (what, ", ".join(checks)))
        return 2
    if checks[what](root) == SKIP:
        return SKIP
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
