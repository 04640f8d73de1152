--! uses: fraud_window
-- Admit one send in one segment, atomically: move its breaker (a state change is stored even
-- when the send is refused), then refuse the send or count it.
-- KEYS: counts, state. ARGV: bucket ms, buckets per window, min sends, min conversion %,
-- elevated sends per round, cool-down ms, proof of work given (0/1), key ttl s.
-- Returns {outcome, ms, poor, good, bucket, new state or '', sends, conversions}: outcome
-- 0 admitted (and counted in `bucket`), 1 proof of work required, 2 blocked (ms = cool-down
-- left); poor = the breaker is open; good = the segment converts above the threshold.
local counts_key, state_key = KEYS[1], KEYS[2]
local bucket_ms, buckets = tonumber(ARGV[1]), tonumber(ARGV[2])
local min_sends, min_rate = tonumber(ARGV[3]), tonumber(ARGV[4])
local round_sends, cooldown_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
local pow_given, ttl = ARGV[7] == '1', tonumber(ARGV[8])
local current = math.floor(now_ms / bucket_ms)
local sends, conversions = fraud_window_sums(counts_key, current, buckets)
local poor = sends >= min_sends and conversions * 100 < min_rate * sends

local st = redis.call('HMGET', state_key, 'state', 'until', 'rsends', 'rconv')
local state, old = st[1] or 'normal', st[1] or 'normal'
local rsends, rconv = tonumber(st[3] or '0'), tonumber(st[4] or '0')
if state == 'blocked' and now_ms >= tonumber(st[2] or '0') then
    state, rsends, rconv = 'elevated', 0, 0
end
if state == 'elevated' and not poor then state = 'normal' end
if state == 'normal' and poor then state, rsends, rconv = 'elevated', 0, 0 end
if state == 'elevated' and rsends >= round_sends then
    if rconv * 100 < min_rate * rsends then
        state = 'blocked'
        redis.call('HSET', state_key, 'until', now_ms + cooldown_ms)
    else
        rsends, rconv = 0, 0  -- the round converted: another round under proof of work
    end
end
if state ~= old or state == 'elevated' then
    if state == 'normal' then
        redis.call('DEL', state_key)
    else
        redis.call('HSET', state_key, 'state', state, 'rsends', rsends, 'rconv', rconv)
        if state ~= old then redis.call('HSET', state_key, 'since', now_ms) end
        redis.call('PEXPIRE', state_key, ttl * 1000 + cooldown_ms)
    end
end

local outcome, wait_ms = 0, 0
if state == 'blocked' then
    outcome, wait_ms = 2, tonumber(redis.call('HGET', state_key, 'until')) - now_ms
elseif state == 'elevated' and not pow_given then
    outcome = 1
end
if outcome == 0 then
    redis.call('HINCRBY', counts_key, 's:' .. current, 1)
    redis.call('EXPIRE', counts_key, ttl)
    if state == 'elevated' then redis.call('HINCRBY', state_key, 'rsends', 1) end
end
-- Poor: the breaker is open. (Not judged by the counts alone: codes are verified a minute or
-- so after their send, so a young, unconverted count says nothing yet.)
local is_poor, is_good = 0, 0
if state ~= 'normal' then
    is_poor = 1
elseif conversions > 0 and conversions * 100 >= min_rate * sends then
    is_good = 1
end
local changed = ''
if state ~= old then changed = state end
return {outcome, wait_ms, is_poor, is_good, current, changed, sends, conversions}
