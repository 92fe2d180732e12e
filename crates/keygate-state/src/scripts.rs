// The Lua scripts run inside Redis: admission (nonce + token buckets) and idempotency.
// They must only touch the keys passed in KEYS (cluster-safe) and read time only from Redis TIME.

/// Nonce claim and token buckets in one atomic call.
///
/// KEYS: `[nonce_key]` when `ARGV[1] == "1"`, then one key per bucket.
/// ARGV: `has_nonce`, `nonce_ttl_ms`, then per bucket `interval_us`, `tau_us`, `cost`, `limit`.
/// Reply: `{nonce_state, denied_by, allowed_1, remaining_1, retry_us_1, reset_us_1, …}` with
/// nonce_state 0 = no nonce, 1 = fresh, 2 = replayed (then no bucket entries follow) and
/// denied_by the 1-based bucket index or 0.
///
/// The bucket arithmetic mirrors `Gcra::decide` in `rate.rs` operation for operation (same
/// doubles, same order), so memory and Redis decide identically for the same clock readings.
/// `tat` is written with `%.17g`, the shortest format that round-trips every double: plain
/// `tostring` keeps 14 digits and would lose a microsecond timestamp's low digits.
pub(crate) const ADMIT: &str = r#"
local eps = 1.0
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local first = 1
local nonce_state = 0
if ARGV[1] == '1' then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) then
    return {2, 0}
  end
  nonce_state = 1
  first = 2
end
local out = {nonce_state, 0}
local pending = {}
local order = {}
local n = #KEYS - first + 1
for i = 0, n - 1 do
  local key = KEYS[first + i]
  local T = tonumber(ARGV[3 + i * 4])
  local tau = tonumber(ARGV[4 + i * 4])
  local cost = tonumber(ARGV[5 + i * 4])
  local limit = tonumber(ARGV[6 + i * 4])
  local tat = pending[key]
  if tat == nil then
    local s = redis.call('GET', key)
    if s then tat = tonumber(s) end
  end
  if tat == nil or tat <= now then tat = now end
  local new_tat = tat + cost * T
  local allowed, free, retry, reset
  if new_tat - now <= tau + eps then
    allowed = 1
    free = tau - (new_tat - now)
    retry = 0
    reset = new_tat - now
    if cost > 0 then
      if pending[key] == nil then order[#order + 1] = key end
      pending[key] = new_tat
    end
  else
    allowed = 0
    free = tau - (tat - now)
    retry = new_tat - tau - now
    reset = tat - now
    if out[2] == 0 then out[2] = i + 1 end
  end
  local remaining = math.floor((free + eps) / T)
  if remaining < 0 then remaining = 0 end
  if remaining > limit then remaining = limit end
  if retry < 0 then retry = 0 end
  if reset < 0 then reset = 0 end
  out[#out + 1] = allowed
  out[#out + 1] = remaining
  out[#out + 1] = math.floor(retry + 0.5)
  out[#out + 1] = math.floor(reset + 0.5)
end
if out[2] == 0 then
  for _, key in ipairs(order) do
    local tat = pending[key]
    local ttl = math.ceil((tat - now) / 1000)
    if ttl < 1 then ttl = 1 end
    redis.call('SET', key, string.format('%.17g', tat), 'PX', ttl)
  end
end
return out
"#;

/// Idempotency begin. KEYS: `[key]`. ARGV: `fingerprint` (32 raw bytes), `in_flight_ttl_ms`.
/// Value layout: `'I' .. fingerprint` while in flight, `'C' .. fingerprint .. response` when done.
/// Reply: `{0}` proceed, `{1}` in flight, `{2, response}` completed, `{3}` key reused.
pub(crate) const IDEM_BEGIN: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], 'I' .. ARGV[1], 'PX', ARGV[2])
  return {0}
end
if string.sub(v, 2, 33) ~= ARGV[1] then return {3} end
local state = string.sub(v, 1, 1)
if state == 'I' then return {1} end
if state == 'C' then return {2, string.sub(v, 34)} end
return redis.error_reply('keygate: unknown idempotency record')
"#;

/// Idempotency complete. KEYS: `[key]`. ARGV: `fingerprint`, `encoded response`, `ttl_ms`.
/// Reply: 1 stored, 0 kept an existing completion or another fingerprint's marker.
pub(crate) const IDEM_COMPLETE: &str = r#"
local v = redis.call('GET', KEYS[1])
if v then
  if string.sub(v, 1, 1) == 'C' then return 0 end
  if string.sub(v, 2, 33) ~= ARGV[1] then return 0 end
end
redis.call('SET', KEYS[1], 'C' .. ARGV[1] .. ARGV[2], 'PX', ARGV[3])
return 1
"#;

/// Idempotency abandon. KEYS: `[key]`. Deletes only an in-flight marker. Reply: 1 deleted, 0 not.
pub(crate) const IDEM_ABANDON: &str = r#"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 1) == 'I' then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;
