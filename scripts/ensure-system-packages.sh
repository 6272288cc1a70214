#!/usr/bin/env bash
# Debian packages the tests run for real: Prometheus (its promtool runs the charts' alert-rule unit
# tests), bubblewrap (the synapse chart's config-check Job runs in it, laid out as its pod),
# Prometheus Alertmanager, PgBouncer, OpenLDAP (slapd and the
# ldap-utils clients), HAProxy as the LDAP tests' comparison point, dnsmasq as the federation tests'
# DNS server, the Prometheus Pushgateway compress-state pushes its run to (and, with `bench`, the load
# generator wrk). Installed only when missing; daemons live in
# /usr/sbin, not on every user's PATH. dnsmasq-base is the program alone: the `dnsmasq` package adds a
# system service that would start serving port 53 on install.
# Installing slapd writes a default configuration to /etc/ldap: the tests ignore it and bring their own.
set -euo pipefail
needed=()
command -v promtool >/dev/null 2>&1 || needed+=(prometheus)
command -v bwrap >/dev/null 2>&1 || needed+=(bubblewrap)
command -v prometheus-alertmanager >/dev/null 2>&1 || needed+=(prometheus-alertmanager)
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || needed+=(pgbouncer)
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || needed+=(slapd)
command -v ldapwhoami >/dev/null 2>&1 || needed+=(ldap-utils)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || needed+=(haproxy)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || needed+=(dnsmasq-base)
command -v prometheus-pushgateway >/dev/null 2>&1 || needed+=(prometheus-pushgateway)
if [ "${1:-}" = bench ]; then command -v wrk >/dev/null 2>&1 || needed+=(wrk); fi
[ ${#needed[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing ${needed[*]}: install them with your package manager (the tests that need them will fail)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
