-- Fixed-window counters: a counter key holds the units used in the current window and
-- expires when the window ends; the first unit taken starts the window. Taking a place is
-- fixed_window_refusal (refuse with the time left) then fixed_window_count: two functions, so
-- a script can check every counter before it counts on any.

-- The ms until the window of `key` ends if `cost` more units do not fit under `limit`,
-- else nil (there is room).
local function fixed_window_refusal(key, limit, window, cost)
    local used = tonumber(redis.call('GET', key) or '0')
    if used + cost <= limit then return nil end
    local ms_left = redis.call('PTTL', key)
    if ms_left < 0 then ms_left = window * 1000 end
    return ms_left
end

-- Count `cost` units on `key` (check fixed_window_refusal first).
local function fixed_window_count(key, window, cost)
    if redis.call('INCRBY', key, cost) == cost then redis.call('EXPIRE', key, window) end
end

-- Give `cost` units back while the window lasts (never creates a key without an expiry).
local function fixed_window_refund(key, cost)
    if redis.call('EXISTS', key) == 1 then redis.call('DECRBY', key, cost) end
end

-- Several counters taken as one event, all or none. keys: the counters; argv: limit, window
-- (s) and cost per key. fixed_windows_refusal returns {index of the first counter without
-- room (1-based), ms until it resets}, or nil; then fixed_windows_count counts on every one.
local function fixed_windows_refusal(keys, argv)
    for i, key in ipairs(keys) do
        local ms_left = fixed_window_refusal(
            key, tonumber(argv[3 * i - 2]), tonumber(argv[3 * i - 1]), tonumber(argv[3 * i]))
        if ms_left then return {i, ms_left} end
    end
    return nil
end

local function fixed_windows_count(keys, argv)
    for i, key in ipairs(keys) do
        fixed_window_count(key, tonumber(argv[3 * i - 1]), tonumber(argv[3 * i]))
    end
end

-- Give back each counter's cost (`costs`, per key) while its window lasts.
local function fixed_windows_refund(keys, costs)
    for i, key in ipairs(keys) do fixed_window_refund(key, tonumber(costs[i])) end
end
