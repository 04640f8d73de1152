--! uses: fraud_window
-- Admit one send in all of its segments in one atomic step: move each segment's breaker (a
-- state change is stored even when the send is refused), then refuse the send, counting it
-- nowhere, or count it in every segment. All or nothing: a refused send never holds a place
-- in another segment, not even for a moment.
-- KEYS: counts, state of each segment, in pairs (one {fraud} hash tag). ARGV: bucket ms,
-- buckets per window, min sends, min conversion %, elevated sends per round, cool-down ms,
-- proof of work given (0/1), key ttl s.
-- Returns {outcome, ms, poor, good, bucket, then per segment: new state or '', sends,
-- conversions}: outcome 0 admitted (and counted in `bucket`), 1 proof of work required,
-- 2 blocked (ms = the longest cool-down left); poor = a segment's breaker is open; good = a
-- segment converts above the threshold.
local bucket_ms, buckets = tonumber(ARGV[1]), tonumber(ARGV[2])
local min_sends, min_rate = tonumber(ARGV[3]), tonumber(ARGV[4])
local round_sends, cooldown_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
local pow_given, ttl = ARGV[7] == '1', tonumber(ARGV[8])
local current = math.floor(now_ms / bucket_ms)

-- Move one segment's breaker; returns its state, its outcome and the ms to wait.
local function judge(counts_key, state_key, sends, conversions)
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
    if state == 'blocked' then
        return state, old, 2, tonumber(redis.call('HGET', state_key, 'until')) - now_ms
    elseif state == 'elevated' and not pow_given then
        return state, old, 1, 0
    end
    return state, old, 0, 0
end

local outcome, wait_ms, is_poor, is_good = 0, 0, 0, 0
local states, reply = {}, {}
for i = 1, #KEYS, 2 do
    local sends, conversions = fraud_window_sums(KEYS[i], current, buckets)
    local state, old, refusal, wait = judge(KEYS[i], KEYS[i + 1], sends, conversions)
    outcome, wait_ms = math.max(outcome, refusal), math.max(wait_ms, wait)
    -- Poor: the breaker is open. (Not judged by the counts alone: codes are verified a
    -- minute or so after their send, so a young, unconverted count says nothing yet.)
    if state ~= 'normal' then
        is_poor = 1
    elseif conversions > 0 and conversions * 100 >= min_rate * sends then
        is_good = 1
    end
    local changed = ''
    if state ~= old then changed = state end
    states[#states + 1] = state
    reply[#reply + 1], reply[#reply + 2], reply[#reply + 3] = changed, sends, conversions
end
if outcome == 0 then
    for i = 1, #KEYS, 2 do
        redis.call('HINCRBY', KEYS[i], 's:' .. current, 1)
        redis.call('EXPIRE', KEYS[i], ttl)
        if states[(i + 1) / 2] == 'elevated' then redis.call('HINCRBY', KEYS[i + 1], 'rsends', 1) end
    end
end
return {outcome, wait_ms, is_poor, is_good, current, unpack(reply)}
