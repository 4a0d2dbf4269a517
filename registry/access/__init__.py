"""Who may do what: users, tokens (stored hashed), grants per namespace, namespace visibility, and
the one permission check (`policy.may`) that every service call passes through."""
