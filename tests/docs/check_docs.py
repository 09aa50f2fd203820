#!/usr/bin/env python3
"""check_docs.py -- the lists in docs/ that must follow the code, checked
against it so they cannot drift apart:

  (a) docs/protocol.md: every Error.Code and every Envelope body kind of
      proto/sluice.proto has a row in its tables, and every row names one;
  (b) docs/node.md: its option table lists exactly the options the built
      sluice-node prints for --help, with the same environment variables
      and defaults (a row whose default --help prints as "" says in words
      what happens instead);
  (c) docs/protocol.md: every QueueStats (and AdminReply) field has a row
      saying what it means, and every row names a field;
  and every link from docs/protocol.md to a section of another document
  (or of itself) names a heading that exists.

Usage: check_docs.py --root SOURCE_DIR --node PATH/TO/sluice-node
Exit status 0 when everything matches, 1 with one line per mismatch.
Python 3 standard library only.
"""
import argparse
import os
import re
import subprocess
import sys


def strip_comments(text):
    return re.sub(r"//[^\n]*", "", text)


def block(text, opener):
    """The text between the braces that follow `opener` (a regex)."""
    m = re.search(opener + r"\s*\{", text)
    if not m:
        raise SystemExit("check_docs: cannot find '%s' in proto" % opener)
    depth, i = 1, m.end()
    while depth:
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
        i += 1
    return text[m.end():i - 1]


def proto_lists(path):
    text = strip_comments(open(path, encoding="utf-8").read())
    error = block(text, r"message\s+Error\b")
    codes = re.findall(r"^\s*([A-Z][A-Z0-9_]*)\s*=\s*\d+\s*;", block(error, r"enum\s+Code\b"), re.M)
    body = block(block(text, r"message\s+Envelope\b"), r"oneof\s+body\b")
    kinds = re.findall(r"^\s*[A-Za-z_.][\w.]*\s+([a-z_][a-z0-9_]*)\s*=\s*\d+\s*;", body, re.M)
    return codes, kinds, message_fields(text, "QueueStats"), message_fields(text, "AdminReply")


def message_fields(text, name):
    body = block(text, r"message\s+%s\b" % name)
    return re.findall(r"^\s*(?:repeated\s+)?[A-Za-z_.][\w.]*\s+([a-z_][a-z0-9_]*)\s*=\s*\d+\s*;",
                      body, re.M)


def section(md, title):
    """Lines of the section whose heading is exactly `title` (any level),
    up to the next heading of the same or a higher level."""
    lines = md.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(#+)\s+(.*?)\s*$", line)
        if m and m.group(2) == title:
            level = len(m.group(1))
            out = []
            for rest in lines[i + 1:]:
                h = re.match(r"^(#+)\s", rest)
                if h and len(h.group(1)) <= level:
                    break
                out.append(rest)
            return out
    return None


def table_names(lines, where, problems):
    """First-column names of the first table in lines: each row must name
    exactly one thing, in backticks."""
    names, in_table = [], False
    for line in lines:
        if not line.startswith("|"):
            if in_table:
                break
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not in_table:  # the header row
            in_table = True
            continue
        if set(cells[0]) <= set("-: "):
            continue  # the separator row
        m = re.fullmatch(r"`([^`]+)`", cells[0])
        if not m:
            problems.append("%s: row does not start with one `name`: %s" % (where, line.strip()))
            continue
        names.append((m.group(1), cells))
    if not in_table:
        problems.append("%s: no table found" % where)
    return names


def compare(doc_names, code_names, what, doc, code, problems):
    seen = set()
    for n in doc_names:
        if n in seen:
            problems.append("%s: %s `%s` has two rows" % (doc, what, n))
        seen.add(n)
    for n in code_names:
        if n not in seen:
            problems.append("%s: %s `%s` (in %s) has no row" % (doc, what, n, code))
    for n in sorted(seen - set(code_names)):
        problems.append("%s: %s `%s` has a row but is not in %s" % (doc, what, n, code))


def help_options(node):
    try:
        out = subprocess.run([node, "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        raise SystemExit("check_docs: cannot run '%s --help': %s" % (node, e))
    text = out.stdout + out.stderr
    opts, defaults = {}, {}
    for m in re.finditer(r"^\s*--([a-z0-9][a-z0-9-]*)\s+\(([^)]*)\)", text, re.M):
        env = re.search(r"env\s+([A-Z0-9_]+)", m.group(2))
        opts[m.group(1)] = env.group(1) if env else None
        default = re.search(r'default "([^"]*)"', m.group(2))
        defaults[m.group(1)] = default.group(1) if default else None
    if not opts:
        raise SystemExit("check_docs: no options found in '%s --help':\n%s" % (node, text))
    return opts, defaults


def anchors(md):
    """GitHub's heading anchors for a markdown text."""
    out = set()
    in_code = False
    for line in md.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        m = re.match(r"^#+\s+(.*?)\s*$", line)
        if m and not in_code:
            a = m.group(1).strip().lower()
            a = re.sub(r"[^\w\- ]", "", a).replace(" ", "-")
            out.add(a)
    return out


def check_links(docs_dir, name, md, problems):
    for target, anchor in re.findall(r"\]\(([A-Za-z0-9_./-]*)#([A-Za-z0-9_-]+)\)", md):
        path = os.path.join(docs_dir, target) if target else os.path.join(docs_dir, name)
        if not os.path.exists(path):
            problems.append("%s: link to missing file %s" % (name, target))
            continue
        if anchor not in anchors(open(path, encoding="utf-8").read()):
            problems.append("%s: link to %s#%s: no such section" % (name, target or name, anchor))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True, help="source tree")
    ap.add_argument("--node", required=True, help="the built sluice-node")
    a = ap.parse_args()
    proto = os.path.join(a.root, "proto", "sluice.proto")
    docs = os.path.join(a.root, "docs")
    protocol = open(os.path.join(docs, "protocol.md"), encoding="utf-8").read()
    node_md = open(os.path.join(docs, "node.md"), encoding="utf-8").read()
    problems = []
    codes, kinds, fields, reply_fields = proto_lists(proto)

    # (a) error codes and body kinds
    sec = section(protocol, "Error codes")
    if sec is None:
        problems.append("protocol.md: no section 'Error codes'")
    else:
        rows = table_names(sec, "protocol.md Error codes", problems)
        compare([n for n, _ in rows], codes, "error code", "protocol.md", "Error.Code", problems)
    sec = section(protocol, "JobConfirm codes")
    if sec is None:
        problems.append("protocol.md: no section 'JobConfirm codes'")
    else:
        for n, _ in table_names(sec, "protocol.md JobConfirm codes", problems):
            if n not in codes:
                problems.append("protocol.md JobConfirm codes: `%s` is not an Error.Code" % n)
    sec = section(protocol, "Envelope bodies")
    if sec is None:
        problems.append("protocol.md: no section 'Envelope bodies'")
    else:
        rows = table_names(sec, "protocol.md Envelope bodies", problems)
        compare([n for n, _ in rows], kinds, "body kind", "protocol.md", "Envelope.body", problems)

    # (b) node options
    opts, defaults = help_options(a.node)
    sec = section(node_md, "Configuration")
    if sec is None:
        problems.append("node.md: no section 'Configuration'")
    else:
        rows = table_names(sec, "node.md Configuration", problems)
        compare([n for n, _ in rows], list(opts), "option", "node.md",
                "sluice-node --help", problems)
        for n, cells in rows:
            env = next((re.fullmatch(r"`(SLUICE_[A-Z0-9_]+)`", c) for c in cells[1:]
                        if re.fullmatch(r"`SLUICE_[A-Z0-9_]+`", c)), None)
            if n in opts and opts[n] and env and env.group(1) != opts[n]:
                problems.append("node.md: option `%s` says env %s, --help says %s"
                                % (n, env.group(1), opts[n]))
            if n in opts and opts[n] and not env:
                problems.append("node.md: option `%s` does not name its env var %s"
                                % (n, opts[n]))
            doc_default = cells[1].strip("`") if len(cells) > 1 else ""
            if defaults.get(n) and doc_default != defaults[n]:
                problems.append("node.md: option `%s` says default %s, --help says %s"
                                % (n, cells[1] if len(cells) > 1 else "nothing", defaults[n]))

    # (c) QueueStats fields, and AdminReply's too
    for title, names in (("QueueStats", fields), ("AdminReply", reply_fields)):
        sec = section(protocol, title)
        if sec is None:
            problems.append("protocol.md: no section '%s'" % title)
            continue
        rows = table_names(sec, "protocol.md " + title, problems)
        for n, cells in rows:
            if len(cells) < 2 or len(cells[1]) < 3:
                problems.append("protocol.md %s: `%s` is not described" % (title, n))
        compare([n for n, _ in rows], names, "%s field" % title, "protocol.md", title, problems)

    check_links(docs, "protocol.md", protocol, problems)

    for p in problems:
        print("DRIFT " + p)
    print("check_docs: %d error codes, %d body kinds, %d options, %d QueueStats fields; %s"
          % (len(codes), len(kinds), len(opts), len(fields),
             "%d mismatches" % len(problems) if problems else "docs match the code"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
