"""ldap-proxy: an LDAP-aware load-balancing proxy for Synapse's LDAP logins, with an HTTP control plane."""
