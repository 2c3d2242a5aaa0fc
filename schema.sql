-- agentspool: the whole database schema. Applied at start (idempotent), under an advisory lock so
-- several processes starting together do not race. Ships inside the wheel as engine/schema.sql.

CREATE TABLE IF NOT EXISTS schema_version (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- The sha256 of each text of this file that was applied: a start with the same text runs none
-- of it (its statements lock tables even when they change nothing).
CREATE TABLE IF NOT EXISTS schema_applied (
    digest      text PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- The head of the global log. Every append transaction locks this one row first, so positions are
-- handed out in commit order: gapless, and no reader sees position N+1 before N has committed.
CREATE TABLE IF NOT EXISTS log_head (
    id        integer PRIMARY KEY CHECK (id = 1),
    position  bigint  NOT NULL
);
INSERT INTO log_head (id, position) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;

-- Server-wide settings (the admin token's hash lives here, never the token).
CREATE TABLE IF NOT EXISTS server_settings (
    key    text PRIMARY KEY,
    value  text NOT NULL
);

CREATE TABLE IF NOT EXISTS tenants (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS tenants_created ON tenants (created_at, id);

CREATE TABLE IF NOT EXISTS api_keys (
    id            text PRIMARY KEY,
    tenant_id     text NOT NULL REFERENCES tenants (id),
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('owner', 'member', 'viewer')),
    secret_hash   bytea NOT NULL,            -- sha256 of the secret part; the key is shown once
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant_id, created_at, id);

-- Short-lived tokens for browser EventSource (`?access_token=`), engine/auth/stream_tokens.py. A token
-- dies with the API key that asked for it (null key_id: the admin token asked).
CREATE TABLE IF NOT EXISTS stream_tokens (
    id           text PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES tenants (id),
    key_id       text,
    session_id   text,                      -- null: any stream of the tenant
    secret_hash  bytea NOT NULL,            -- sha256 of the secret part; the token is shown once
    expires_at   timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS stream_tokens_expiry ON stream_tokens (expires_at);

-- One row per stream: its owner and its type, written by the stream's first append. Its version
-- is not kept here (an update per stream per batch would cost as much as the events insert):
-- it is the last seq in events, one backward step of the (stream_id, seq) index.
CREATE TABLE IF NOT EXISTS streams (
    stream_id    text PRIMARY KEY,
    tenant_id    text NOT NULL,
    stream_type  text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS streams_tenant_type ON streams (tenant_id, stream_type, created_at, stream_id);
-- Lists of one kind of resource (agents, ...) page by id.
CREATE INDEX IF NOT EXISTS streams_tenant_type_id ON streams (tenant_id, stream_type, stream_id);

CREATE TABLE IF NOT EXISTS events (
    position     bigint PRIMARY KEY,
    id           uuid   NOT NULL UNIQUE,
    tenant_id    text   NOT NULL,
    stream_id    text   NOT NULL,
    stream_type  text   NOT NULL,
    seq          bigint NOT NULL,
    type         text   NOT NULL,
    data         json   NOT NULL,   -- json, not jsonb: stored byte for byte as appended and
    meta         json   NOT NULL,   -- passed through to clients unchanged
    created_at   timestamptz NOT NULL,
    UNIQUE (stream_id, seq)
);
CREATE INDEX IF NOT EXISTS events_tenant_position ON events (tenant_id, position);
-- An agent's config events and its memory, without reading its heartbeats (every few seconds,
-- for as long as it runs): EventStore.read_stream_types names exactly these types.
CREATE INDEX IF NOT EXISTS events_agent_config ON events (stream_id, seq)
    WHERE type IN ('agent_archived', 'agent_created', 'agent_updated');
CREATE INDEX IF NOT EXISTS events_memory ON events (stream_id, seq)
    WHERE type IN ('memory_written');

-- Each projection's position in the log, written in the same transaction as its rows.
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name      text PRIMARY KEY,
    position  bigint NOT NULL DEFAULT 0
);

-- The runtime's work list, kept by the `session_runs` projection: a session needs a worker while
-- wanted_position > done_position (an event it must react to came after what a worker last
-- finished with). Workers claim a session by taking its lease.
CREATE TABLE IF NOT EXISTS session_runs (
    session_id       text PRIMARY KEY,
    tenant_id        text NOT NULL,
    wanted_position  bigint NOT NULL,
    done_position    bigint NOT NULL DEFAULT 0,
    lease_owner      text,
    lease_expires    timestamptz
);
CREATE INDEX IF NOT EXISTS session_runs_wanted ON session_runs (wanted_position)
    WHERE wanted_position > done_position;
-- Claims of the session since its last completed step (engine/runtime/schedule.py): counted at
-- the claim, so a step whose worker crashes is counted too. Past SPOOL_STEP_MAX_TRIES the turn
-- ends failed. Worker-owned, like the lease columns.
ALTER TABLE session_runs ADD COLUMN IF NOT EXISTS tries integer NOT NULL DEFAULT 0;
-- Running turns per tenant, counted by every claim (SPOOL_TENANT_MAX_RUNNING_TURNS).
CREATE INDEX IF NOT EXISTS session_runs_leased ON session_runs (tenant_id)
    WHERE lease_owner IS NOT NULL;

-- Tool calls waiting for (or given) a human decision, kept by the `approvals` projection.
CREATE TABLE IF NOT EXISTS approvals (
    approval_id   text PRIMARY KEY,
    tenant_id     text NOT NULL,
    session_id    text NOT NULL,
    turn_id       text NOT NULL,
    tool_use_id   text NOT NULL,
    tool_name     text NOT NULL,
    input         json NOT NULL,
    status        text NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'cancelled')),
    reason        text,
    requested_at  timestamptz NOT NULL,
    resolved_at   timestamptz,
    resolved_by   text
);
CREATE INDEX IF NOT EXISTS approvals_tenant_status ON approvals (tenant_id, status, approval_id);
CREATE INDEX IF NOT EXISTS approvals_turn ON approvals (turn_id) WHERE status = 'pending';

-- Boards and tasks as people look at them, kept by the `tasks` projection (engine/projections/
-- tasks.py). A deleted board keeps its row (deleted_at): a task found on it is deleted by the
-- engine, even one created while the board was being deleted. A deleted task loses its row. `seq` is the stream's last seq: the engine's own changes (a task
-- unblocked when its dependencies are done) append with it as expected_seq.
CREATE TABLE IF NOT EXISTS boards (
    board_id     text PRIMARY KEY,
    tenant_id    text NOT NULL,
    name         text NOT NULL,
    description  text,
    seq          bigint NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    deleted_at   timestamptz
);
CREATE INDEX IF NOT EXISTS boards_tenant ON boards (tenant_id, board_id) WHERE deleted_at IS NULL;
CREATE INDEX IF NOT EXISTS boards_deleted ON boards (board_id) WHERE deleted_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS tasks (
    task_id            text PRIMARY KEY,
    tenant_id          text NOT NULL,
    board_id           text NOT NULL,
    title              text NOT NULL,
    description        text,
    status             text NOT NULL
        CHECK (status IN ('inbox', 'in_progress', 'review', 'done', 'blocked')),
    resume_status      text,             -- set while blocked by dependencies: the status to return to
    priority           text NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    assignee_id        text,
    due_at             timestamptz,
    dependencies       text[] NOT NULL,  -- as the task lists them
    open_dependencies  integer NOT NULL, -- how many of them exist and are not done
    seq                bigint NOT NULL,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_tenant ON tasks (tenant_id, task_id);
CREATE INDEX IF NOT EXISTS tasks_tenant_status ON tasks (tenant_id, status, task_id);
CREATE INDEX IF NOT EXISTS tasks_tenant_assignee ON tasks (tenant_id, assignee_id, task_id);
CREATE INDEX IF NOT EXISTS tasks_board ON tasks (board_id, status, task_id);
-- The engine's work list: tasks whose status the dependency rule says must change.
CREATE INDEX IF NOT EXISTS tasks_wanting_status ON tasks (task_id)
    WHERE (status = 'blocked' AND resume_status IS NOT NULL AND open_dependencies = 0)
       OR (status NOT IN ('blocked', 'done') AND open_dependencies > 0);

-- One row per dependency of a (not deleted) task: `task_id` waits for `depends_on`.
CREATE TABLE IF NOT EXISTS task_dependencies (
    task_id     text NOT NULL,
    depends_on  text NOT NULL,
    PRIMARY KEY (task_id, depends_on)
);
CREATE INDEX IF NOT EXISTS task_dependencies_on ON task_dependencies (depends_on);

-- The `budgets` projection (engine/projections/budgets.py). Limits per scope ('tenant',
-- 'agent:<id>', 'session:<id>') and period, from budget_set; a scope with no row has no budget.
CREATE TABLE IF NOT EXISTS budget_limits (
    tenant_id   text NOT NULL,
    scope       text NOT NULL,
    period      text NOT NULL CHECK (period IN ('total', 'month', 'day')),
    tokens      bigint,                  -- null: no token limit
    cost_nanos  bigint,                  -- USD x 1e9; null: no USD limit
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, scope, period)
);

-- Spend per session, model and UTC day, summed from spend_recorded: what budgets are checked
-- against and what /v1/usage groups (by agent, session, model or day).
CREATE TABLE IF NOT EXISTS spend (
    session_id          text   NOT NULL,
    model               text   NOT NULL,
    day                 date   NOT NULL,
    tenant_id           text   NOT NULL,
    agent_id            text   NOT NULL,
    calls               bigint NOT NULL,
    input_tokens        bigint NOT NULL,
    output_tokens       bigint NOT NULL,
    cache_read_tokens   bigint NOT NULL,
    cache_write_tokens  bigint NOT NULL,
    reasoning_tokens    bigint NOT NULL,
    tokens              bigint NOT NULL,
    cost_nanos          bigint NOT NULL,
    PRIMARY KEY (session_id, model, day)
);
CREATE INDEX IF NOT EXISTS spend_tenant_day ON spend (tenant_id, day);
CREATE INDEX IF NOT EXISTS spend_agent_day ON spend (agent_id, day);

-- Running sums per scope ('tenant', 'agent:<id>', 'session:<id>') and period ('day', 'month',
-- 'total'; period_start 1970-01-01): a budget check reads one row per limit.
CREATE TABLE IF NOT EXISTS spend_totals (
    tenant_id     text   NOT NULL,
    scope         text   NOT NULL,
    period        text   NOT NULL,
    period_start  date   NOT NULL,
    tokens        bigint NOT NULL,
    cost_nanos    bigint NOT NULL,
    PRIMARY KEY (tenant_id, scope, period, period_start)
);

-- Agents at work, kept by the `agents` projection (engine/projections/agents.py): per agent its
-- current version, whether it is archived, its last heartbeat, and totals over its sessions. The
-- status people see (busy, idle, offline) depends on the clock, so it is computed when read.
CREATE TABLE IF NOT EXISTS agents (
    agent_id           text PRIMARY KEY,
    tenant_id          text NOT NULL,
    version            integer NOT NULL,
    archived           boolean NOT NULL,
    last_heartbeat_at  timestamptz,
    sessions           integer NOT NULL,   -- sessions pinned to the agent
    active_sessions    integer NOT NULL,   -- of them, running or requires_action
    turns              bigint NOT NULL,    -- session_done events of its sessions
    tokens             bigint NOT NULL,    -- sums of its sessions' spend_recorded
    cost_nanos         bigint NOT NULL,    -- USD x 1e9
    created_at         timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS agents_tenant ON agents (tenant_id, agent_id);

-- One row per session, kept by the same projection: what `GET /v1/sessions` lists. `fold` holds
-- the little the status needs (turns queued, the running one, its calls without a result and
-- their approvals), so each event moves the status exactly as engine/domain/session_state.py does.
CREATE TABLE IF NOT EXISTS session_summaries (
    session_id     text PRIMARY KEY,
    tenant_id      text NOT NULL,
    agent_id       text,
    agent_version  integer,
    title          text,
    status         text NOT NULL CHECK (status IN ('idle', 'running', 'requires_action', 'archived')),
    turns          integer NOT NULL,
    tokens         bigint NOT NULL,
    cost_nanos     bigint NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,   -- the session's last event
    last_position  bigint NOT NULL,        -- the session's last event
    fold           jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS session_summaries_tenant ON session_summaries (tenant_id, session_id);
CREATE INDEX IF NOT EXISTS session_summaries_agent
    ON session_summaries (tenant_id, agent_id, session_id);
CREATE INDEX IF NOT EXISTS session_summaries_status
    ON session_summaries (tenant_id, status, session_id);

-- Runtime tokens (`spt_<token id>_<secret>`): an agent's runtime sends heartbeats with one, and
-- can do nothing else. Only sha256(secret) is kept, as for API keys.
CREATE TABLE IF NOT EXISTS agent_tokens (
    id           text PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES tenants (id),
    agent_id     text NOT NULL,
    name         text NOT NULL,
    secret_hash  bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX IF NOT EXISTS agent_tokens_agent ON agent_tokens (tenant_id, agent_id, id);

INSERT INTO schema_version (version) VALUES (1) ON CONFLICT (version) DO NOTHING;
