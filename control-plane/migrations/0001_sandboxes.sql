-- One row per sandbox the control plane knows about. A row is removed when the
-- sandbox is deleted, so a second delete finds nothing and answers 404.
CREATE TABLE sandboxes (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    provider      TEXT NOT NULL,
    -- The provider's own name for the sandbox (for local: the same as id).
    provider_id   TEXT NOT NULL,
    template_id   TEXT,
    -- creating | running | paused
    state         TEXT NOT NULL,
    mcp_url       TEXT NOT NULL DEFAULT '',
    -- Bearer token mcp-tools in the sandbox expects.
    token         TEXT NOT NULL,
    -- Extra headers (JSON object) a client must send to mcp_url, besides Authorization.
    mcp_headers   TEXT NOT NULL DEFAULT '{}',
    -- Provider-private facts (JSON), e.g. the local provider's port and pid.
    provider_data TEXT NOT NULL DEFAULT '{}',
    metadata      TEXT NOT NULL DEFAULT '{}',
    timeout_secs  INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);

CREATE INDEX sandboxes_user ON sandboxes (user_id, created_at, id);
CREATE INDEX sandboxes_expiry ON sandboxes (state, expires_at);
