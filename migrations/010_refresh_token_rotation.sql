-- Refresh-token rotation bookkeeping (issue 6). A token's `revoke_reason` tells a revoked token that a
-- legitimate client may still hold (session ended: logout, admin, reuse) from one that no legitimate
-- client holds any more ('superseded': the sibling minted during a concurrent double refresh that the
-- client discarded). Presenting a superseded token counts as reuse.
alter table user_tokens add column revoke_reason text;

-- Rotation looks up a token's children (grace window) and siblings (supersede).
create index user_tokens_parent_idx on user_tokens (parent_id) where parent_id is not null;

-- Active sessions of a user, newest first (GET /auth/sessions).
create index user_sessions_active_idx on user_sessions (user_id, created_at desc, id desc) where revoked_at is null;
