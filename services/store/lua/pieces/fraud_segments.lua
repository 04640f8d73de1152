-- One send in all of its fraud segments (services/codes/fraud.py): fraud_judge decides (and
-- stores a segment's state change even when the send is refused), fraud_count counts an
-- admitted send in every segment, fraud_give_back takes a counted send back. Uses now_ms
-- (piece fraud_window). A send is counted in every segment or in none: a refused send never
-- holds a place in another segment, not even for a moment.
--
-- Who sends weighs more than where it goes, and only the narrowest segment can refuse:
-- - the first pair is the client address (IPv6: its /64). Its breaker is normal -> elevated
--   (proof of work, probation rounds of `round_sends`) -> blocked for the cool-down when a
--   round converts too little -> elevated again.
-- - every other pair (the network /24 or /48, and the number block when the purpose judges
--   it) is never blocked: a judged segment converting too little asks for proof of work whose
--   level starts at 1 and rises by `step` with every unconverted send past `min_sends`, up
--   to `max_level` (each level doubles the work), and falls as its sends convert or age out.
-- The request's proof-of-work level is the sum of its segments' levels (at most max_level).
-- Its budget tier: poor when the address or the network is elevated; good when the address
-- has conversion credit left (each conversion of its own sends buys `credit` good sends);
-- newcomer otherwise. A good send is counted as credit used (g:) in the address segment.
--
-- keys: counts, state of each segment, in pairs, the address first (one {fraud} hash tag).
-- argv: bucket ms, buckets per window, min sends, min conversion %, sends per address round,
-- cool-down ms, proof-of-work level solved (0 none), key ttl s, max level, credit per
-- conversion, levels per unconverted send of a network or number block.
-- Returns the verdict {outcome, ms, level, tier, bucket, then per segment: new state or '',
-- level, sends, conversions}: outcome 0 admitted (not counted yet: fraud_count), 1 proof of
-- work of `level` required, 2 blocked (ms = the cool-down left); tier 0 good, 1 newcomer,
-- 2 poor. Also returns whether the address is on probation (fraud_count's `elevated`).
local function fraud_judge(keys, argv)
    local bucket_ms, buckets = tonumber(argv[1]), tonumber(argv[2])
    local min_sends, min_rate = tonumber(argv[3]), tonumber(argv[4])
    local round_sends, cooldown_ms = tonumber(argv[5]), tonumber(argv[6])
    local pow_level, ttl = tonumber(argv[7]), tonumber(argv[8])
    local max_level, credit = tonumber(argv[9]), tonumber(argv[10])
    local step = tonumber(argv[11])
    local current = math.floor(now_ms / bucket_ms)

    local function is_poor(sends, conversions)
        return sends >= min_sends and conversions * 100 < min_rate * sends
    end

    -- The address: move its breaker; returns its state, the old one, refusal (0/2), ms to wait.
    local function judge_address(state_key, poor)
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
        end
        return state, old, 0, 0
    end

    -- A wider segment: its proof-of-work level from its window alone; the state hash only
    -- records it (for operators and the one log line per change).
    local function judge_wider(state_key, sends, conversions)
        local level = 0
        if is_poor(sends, conversions) then
            local unconverted = sends - conversions * 100 / min_rate
            local past = math.floor(math.max(0, unconverted - min_sends))
            level = math.min(max_level, 1 + step * past)
        end
        local st = redis.call('HMGET', state_key, 'state', 'level')
        local old, old_level = st[1] or 'normal', tonumber(st[2] or '0')
        local state = 'normal'
        if level > 0 then state = 'elevated' end
        if level == 0 then
            if old ~= 'normal' then redis.call('DEL', state_key) end
        else
            if level ~= old_level then
                redis.call('HSET', state_key, 'state', state, 'level', level)
                if state ~= old then redis.call('HSET', state_key, 'since', now_ms) end
            end
            redis.call('EXPIRE', state_key, ttl)
        end
        if level > old_level and old ~= 'normal' then old = 'raised' end
        return state, old, level
    end

    local outcome, wait_ms, level, poor, good = 0, 0, 0, false, false
    local address_state, reply = 'normal', {}
    for i = 1, #keys, 2 do
        local sends, conversions, credited = fraud_window_sums(keys[i], current, buckets)
        local state, old, seg_level
        if i == 1 then
            local refusal, wait
            state, old, refusal, wait = judge_address(keys[i + 1], is_poor(sends, conversions))
            outcome, wait_ms, address_state = refusal, wait, state
            seg_level = 0
            if state ~= 'normal' then seg_level, poor = 1, true end
            good = conversions * credit > credited
        else
            state, old, seg_level = judge_wider(keys[i + 1], sends, conversions)
            if i == 3 and seg_level > 0 then poor = true end  -- the network: who sends
        end
        level = level + seg_level
        local changed = ''
        if state ~= old then changed = state end
        reply[#reply + 1], reply[#reply + 2] = changed, seg_level
        reply[#reply + 1], reply[#reply + 2] = sends, conversions
    end
    level = math.min(level, max_level)
    if outcome == 0 and pow_level < level then outcome = 1 end
    local tier = 1
    if poor then tier = 2 elseif good then tier = 0 end
    return {outcome, wait_ms, level, tier, current, unpack(reply)}, address_state == 'elevated'
end

-- Count a send fraud_judge admitted in every segment (`verdict` is its reply, `elevated` its
-- second value, `ttl` the keys' ttl in s): a send, credit used if its tier is good, and a
-- send of the address's probation round.
local function fraud_count(keys, ttl, verdict, elevated)
    local tier, current = verdict[4], verdict[5]
    for i = 1, #keys, 2 do
        redis.call('HINCRBY', keys[i], 's:' .. current, 1)
        if i == 1 and tier == 0 then redis.call('HINCRBY', keys[i], 'g:' .. current, 1) end
        redis.call('EXPIRE', keys[i], ttl)
    end
    if elevated then redis.call('HINCRBY', keys[2], 'rsends', 1) end
end

-- Give back a counted send that did not happen (a later limit refused, the provider failed),
-- in every segment: `bucket` it was counted in, `credited` if it was served on the address's
-- conversion credit. Never creates a key.
local function fraud_give_back(keys, bucket, credited)
    local function take_back(key, field)
        if tonumber(redis.call('HGET', key, field) or '0') > 0 then
            redis.call('HINCRBY', key, field, -1)
        end
    end
    for i = 1, #keys, 2 do
        take_back(keys[i], 's:' .. bucket)
    end
    if credited then take_back(keys[1], 'g:' .. bucket) end
    take_back(keys[2], 'rsends')
end
