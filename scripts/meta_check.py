#!/usr/bin/env python3
"""scripts/meta_check.py: check the PGXN distribution: META.json against the
PGXN Meta Spec 1.0.0 (https://pgxn.org/spec/), its versions against the
control file's default_version, and the zip "make dist" makes.

The version lives in provider_connections.control only: "make META.json"
writes META.json from META.json.in with it ('1.4' gives "1.4.0"), and
"make dist" packs the committed tree (git archive HEAD) and that META.json
into provider_connections-<version>.zip. This script runs both, into a
temporary directory, and fails (exit 1, each problem printed) when
- META.json lacks a key the spec requires, or a key has the wrong type;
- a version (the distribution's, a provided extension's, a prerequisite's)
  is not a semantic version, or the license is not one the spec names;
- the distribution's or the extension's version is not the control file's;
- the zip lacks the control file, an install or upgrade script, a file of
  src/, the Makefile or META.json, holds anything of .git, or its
  META.json or control file differ from the tree's.

Usage: scripts/meta_check.py              (this tree; PG_CONFIG from the
                                           environment, else pg_config)
       scripts/meta_check.py --self-test  (plants errors, a wrong version
       and missing keys among them, and checks each is reported; and checks
       that META.json follows a changed control file)

Outside a git checkout (an unpacked distribution) the zip is not made and
only META.json is checked.

Copyright (c) 2026, provider_connections developers.
Released under the PostgreSQL License (see LICENSE).
"""
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

TOP = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
EXTENSION = 'provider_connections'

# Semantic Versioning 1.0.0, which the Meta Spec 1.0.0 names: three
# non-negative integers without leading zeros, and an optional pre-release
# tag of letters and digits starting with a letter, right after them or
# after a dash ("1.0.0beta1", "1.0.0-beta1").
SEMVER = re.compile(r'^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-?[A-Za-z][0-9A-Za-z-]*)?$')
# A prerequisite's version: 0 (any), a version, or one with an operator
# in front (">= 1.2.0"), or several joined by commas.
PREREQ = re.compile(r'^\s*((==|!=|>=|<=|>|<)\s*)?\S+\s*$')

# The license strings of the Meta Spec 1.0.0.
LICENSES = {
    'agpl_3', 'apache_1_1', 'apache_2_0', 'artistic_1', 'artistic_2', 'bsd',
    'freebsd', 'gfdl_1_2', 'gfdl_1_3', 'gpl_1', 'gpl_2', 'gpl_3', 'lgpl_2_1',
    'lgpl_3_0', 'mit', 'mozilla_1_0', 'mozilla_1_1', 'openssl', 'perl_5',
    'postgresql', 'qpl_1_0', 'ssleay', 'sun', 'zlib', 'open_source',
    'restricted', 'unrestricted', 'unknown',
}
RELEASE_STATUS = {'stable', 'testing', 'unstable'}
PHASES = {'configure', 'build', 'test', 'runtime', 'develop'}
RELATIONS = {'requires', 'recommends', 'suggests', 'conflicts'}
# Required top-level keys and their types.
REQUIRED = {
    'name': str, 'abstract': str, 'version': str, 'maintainer': (str, list),
    'license': (str, list, dict), 'provides': dict, 'meta-spec': dict,
}
OPTIONAL = {
    'description': str, 'generated_by': str, 'tags': list, 'no_index': dict,
    'prereqs': dict, 'release_status': str, 'resources': dict,
}


def control_version(path):
    """default_version of a control file."""
    with open(path) as f:
        m = re.search(r"^default_version\s*=\s*'([^']*)'", f.read(), re.M)
    if not m:
        raise SystemExit(f'{path}: no default_version')
    return m.group(1)


def semver_of(version):
    """The control file's version as a semantic version: '1.4' is 1.4.0."""
    parts = version.split('.')
    return '.'.join(parts + ['0'] * (3 - len(parts)))


def check_meta(meta, expected_version):
    """The problems of a META.json (a dict), as a list of strings."""
    errors = []
    if not isinstance(meta, dict):
        return ['META.json is not a JSON object']
    for key, typ in REQUIRED.items():
        if key not in meta:
            errors.append(f'missing required key "{key}"')
        elif not isinstance(meta[key], typ):
            errors.append(f'"{key}" has the wrong type ({type(meta[key]).__name__})')
    for key, typ in OPTIONAL.items():
        if key in meta and not isinstance(meta[key], typ):
            errors.append(f'"{key}" has the wrong type ({type(meta[key]).__name__})')
    for key in meta:
        if key not in REQUIRED and key not in OPTIONAL and not key.lower().startswith('x_'):
            errors.append(f'unknown key "{key}" (custom keys start with x_)')
    if errors:
        return errors

    if not re.match(r'^[A-Za-z][A-Za-z0-9_-]*$', meta['name']):
        errors.append(f'name "{meta["name"]}" is not a distribution name')
    if not meta['abstract'].strip():
        errors.append('abstract is empty')
    if not SEMVER.match(meta['version']):
        errors.append(f'version "{meta["version"]}" is not a semantic version')
    elif meta['version'] != expected_version:
        errors.append(f'version "{meta["version"]}" is not the control file\'s ({expected_version})')
    maint = meta['maintainer']
    if not (maint and all(isinstance(m, str) and m.strip() for m in
                          (maint if isinstance(maint, list) else [maint]))):
        errors.append('maintainer is empty')

    lic = meta['license']
    names = lic if isinstance(lic, list) else [lic] if isinstance(lic, str) else []
    for n in names:
        if n not in LICENSES:
            errors.append(f'license "{n}" is not one the spec names')
    if isinstance(lic, dict) and not lic:
        errors.append('license is an empty object')

    spec = meta['meta-spec']
    if spec.get('version') != '1.0.0':
        errors.append(f'meta-spec version is {spec.get("version")!r}, not "1.0.0"')
    if 'url' in spec and not isinstance(spec['url'], str):
        errors.append('meta-spec url is not a string')

    if EXTENSION not in meta['provides']:
        errors.append(f'provides has no "{EXTENSION}"')
    for ext, entry in meta['provides'].items():
        if not isinstance(entry, dict):
            errors.append(f'provides.{ext} is not an object')
            continue
        for key in ('file', 'version'):
            if not isinstance(entry.get(key), str):
                errors.append(f'provides.{ext} lacks "{key}"')
        v = entry.get('version')
        if isinstance(v, str):
            if not SEMVER.match(v):
                errors.append(f'provides.{ext}.version "{v}" is not a semantic version')
            elif ext == EXTENSION and v != expected_version:
                errors.append(f'provides.{ext}.version "{v}" is not the control file\'s ({expected_version})')
        f = entry.get('file')
        if isinstance(f, str) and not os.path.exists(os.path.join(TOP, f)):
            errors.append(f'provides.{ext}.file "{f}" does not exist')

    for phase, relations in meta.get('prereqs', {}).items():
        if phase not in PHASES:
            errors.append(f'prereqs phase "{phase}" is not one of the spec\'s')
            continue
        for rel, reqs in relations.items():
            if rel not in RELATIONS or not isinstance(reqs, dict):
                errors.append(f'prereqs.{phase}.{rel} is not a relation of the spec')
                continue
            for name, v in reqs.items():
                ok = v == 0 or (isinstance(v, str) and all(
                    PREREQ.match(part) for part in v.split(',')))
                if isinstance(v, str) and re.match(r'^\d', v.strip()) and not SEMVER.match(v.strip()):
                    ok = False
                if not ok:
                    errors.append(f'prereqs.{phase}.{rel}.{name}: "{v}" is not a version')

    if 'release_status' in meta and meta['release_status'] not in RELEASE_STATUS:
        errors.append(f'release_status "{meta["release_status"]}" is not one of the spec\'s')
    if not all(isinstance(t, str) and t for t in meta.get('tags', [])):
        errors.append('tags must be non-empty strings')
    return errors


def check_zip(path, meta_text, control_text, tracked):
    """The problems of the distribution's zip, as a list of strings."""
    errors = []
    prefix = f'{EXTENSION}-{semver_of(control_version_text(control_text))}/'
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        for n in names:
            if not n.startswith(prefix):
                errors.append(f'{n} is outside {prefix}')
            if '.git' in n.split('/'):
                errors.append(f'{n} is part of .git')
        wanted = [f'{EXTENSION}.control', 'Makefile', 'META.json', 'META.json.in']
        wanted += [t for t in tracked if re.match(rf'^{EXTENSION}--.*\.sql$', t)]
        wanted += [t for t in tracked if re.match(r'^src/[^/]+\.[ch]$', t)]
        for w in wanted:
            if prefix + w not in names:
                errors.append(f'{w} is missing')
        if not errors:
            if z.read(prefix + 'META.json').decode() != meta_text:
                errors.append('its META.json differs from the one checked')
            if z.read(prefix + f'{EXTENSION}.control').decode() != control_text:
                errors.append('its control file differs from the tree\'s (commit it first)')
    return errors


def control_version_text(text):
    m = re.search(r"^default_version\s*=\s*'([^']*)'", text, re.M)
    return m.group(1) if m else ''


def make(directory, *targets):
    pg_config = os.environ.get('PG_CONFIG', 'pg_config')
    subprocess.run(['make', '-s', '-C', directory, f'PG_CONFIG={pg_config}', *targets],
                   check=True, stdout=subprocess.DEVNULL)


def report(what, errors):
    for e in errors:
        print(f'{what}: {e}')
    return 0 if not errors else 1


def check(top):
    """Checks this tree; returns the exit status."""
    expected = semver_of(control_version(os.path.join(top, f'{EXTENSION}.control')))
    make(top, 'META.json')
    with open(os.path.join(top, 'META.json')) as f:
        meta_text = f.read()
    try:
        meta = json.loads(meta_text)
    except ValueError as e:
        return report('META.json', [f'not JSON: {e}'])
    rc = report('META.json', check_meta(meta, expected))
    placeholders = [k for k in ('resources', 'maintainer') if 'example.invalid' in json.dumps(meta.get(k))
                    or meta.get(k) == ['provider_connections developers']]
    if placeholders:
        print(f'note: META.json.in still has placeholders in: {", ".join(placeholders)}')

    inside = subprocess.run(['git', '-C', top, 'rev-parse', '--is-inside-work-tree'],
                            capture_output=True, text=True)
    if inside.stdout.strip() != 'true':
        print('make dist: not checked, not a git checkout')
        return rc
    tracked = subprocess.run(['git', '-C', top, 'ls-files'], check=True,
                             capture_output=True, text=True).stdout.split('\n')
    with open(os.path.join(top, f'{EXTENSION}.control')) as f:
        control_text = f.read()
    tmp = tempfile.mkdtemp(prefix='provider_connections.dist.')
    try:
        make(top, 'dist', f'DISTDIR={tmp}')
        path = os.path.join(tmp, f'{EXTENSION}-{expected}.zip')
        if not os.path.exists(path):
            return report('make dist', [f'made no {os.path.basename(path)}: {os.listdir(tmp)}'])
        rc |= report(os.path.basename(path), check_zip(path, meta_text, control_text, tracked))
        if rc == 0:
            with zipfile.ZipFile(path) as z:
                print(f'{os.path.basename(path)}: {len(z.namelist())} entries, META.json {expected}')
    finally:
        shutil.rmtree(tmp)
    return rc


def self_test(top):
    """Plants errors and checks each is reported; returns the exit status."""
    failures = []
    with open(os.path.join(top, 'META.json.in')) as f:
        template = f.read()
    good = json.loads(template.replace('@DISTVERSION@', '1.4.0'))
    if check_meta(good, '1.4.0'):
        failures.append(f'the template itself fails: {check_meta(good, "1.4.0")}')

    def planted(name, change, expected='1.4.0'):
        meta = copy.deepcopy(good)
        change(meta)
        errors = check_meta(meta, expected)
        print(f'planted {name}: ' + ('; '.join(errors) if errors else 'NOT REPORTED'))
        if not errors:
            failures.append(name)

    planted('wrong version', lambda m: m.update(version='1.3.0'))
    planted('version of another control file', lambda m: None, expected='1.5.0')
    planted('wrong extension version', lambda m: m['provides'][EXTENSION].update(version='1.3.0'))
    planted('two-part version', lambda m: m.update(version='1.4'))
    planted('leading zero', lambda m: m.update(version='1.04.0'))
    planted('missing key abstract', lambda m: m.pop('abstract'))
    planted('missing key meta-spec', lambda m: m.pop('meta-spec'))
    planted('missing provides file', lambda m: m['provides'][EXTENSION].pop('file'))
    planted('license not in the spec', lambda m: m.update(license='PostgreSQL License'))
    planted('meta-spec 2.0.0', lambda m: m['meta-spec'].update(version='2.0.0'))
    planted('maintainer a number', lambda m: m.update(maintainer=1))
    planted('prereq version 15', lambda m: m['prereqs']['runtime']['requires'].update(PostgreSQL='15'))
    planted('unknown key', lambda m: m.update(homepage='x'))

    # The zip check, on zips made here.
    tmp = tempfile.mkdtemp(prefix='provider_connections.meta.')
    try:
        control = "default_version = '1.4'\n"
        meta_text = '{}'
        tracked = [f'{EXTENSION}--1.0.sql', 'src/a.c']
        base = {f'{EXTENSION}.control': control, 'Makefile': '', 'META.json': meta_text,
                'META.json.in': '', f'{EXTENSION}--1.0.sql': '', 'src/a.c': ''}

        def zipped(name, files, want_errors):
            path = os.path.join(tmp, f'{len(os.listdir(tmp))}.zip')
            with zipfile.ZipFile(path, 'w') as z:
                for n, text in files.items():
                    z.writestr(f'{EXTENSION}-1.4.0/{n}', text)
            errors = check_zip(path, meta_text, control, tracked)
            print(f'zip {name}: ' + ('; '.join(errors) if errors else 'no problem'))
            if bool(errors) != want_errors:
                failures.append(f'zip {name}')

        zipped('complete', base, False)
        zipped('without the control file', {k: v for k, v in base.items() if not k.endswith('.control')}, True)
        zipped('without a C file', {k: v for k, v in base.items() if k != 'src/a.c'}, True)
        zipped('with .git', dict(base, **{'.git/HEAD': ''}), True)
        zipped('with an old control file', dict(base, **{f'{EXTENSION}.control': "default_version = '1.3'\n"}), True)

        # One source of truth: META.json made from a control file that says
        # 1.5 says 1.5.0, in both places.
        work = os.path.join(tmp, 'tree')
        os.mkdir(work)
        for f in ('Makefile', 'META.json.in', f'{EXTENSION}.control'):
            shutil.copy(os.path.join(top, f), work)
        path = os.path.join(work, f'{EXTENSION}.control')
        with open(path) as f:
            text = re.sub(r"^default_version\s*=.*$", "default_version = '1.5'", f.read(), flags=re.M)
        with open(path, 'w') as f:
            f.write(text)
        make(work, 'META.json')
        with open(os.path.join(work, 'META.json')) as f:
            made = json.load(f)
        versions = (made['version'], made['provides'][EXTENSION]['version'])
        print(f'control file 1.5: META.json versions {versions}')
        if versions != ('1.5.0', '1.5.0'):
            failures.append('META.json does not follow the control file')
    finally:
        shutil.rmtree(tmp)

    for f in failures:
        print(f'self-test: {f}: not caught')
    return 1 if failures else 0


def main(args):
    if args == ['--self-test']:
        return self_test(TOP)
    if args:
        print(__doc__.split('\n\n')[2], file=sys.stderr)
        return 2
    return check(TOP)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
