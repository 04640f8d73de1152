--! uses: fixed_window
-- Take one event on every counter, or none. KEYS: counters in one hash slot; ARGV: limit,
-- window (s) and cost per key. Every counter is checked first and only then counted on all,
-- so a refusal changes nothing. An event costing more than what is left is refused (it does
-- not use up the rest).
-- Returns {0, 0} when taken, else {index of the refusing key (1-based), ms until it resets}.
for i, key in ipairs(KEYS) do
    local ms_left = fixed_window_refusal(
        key, tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i]))
    if ms_left then return {i, ms_left} end
end
for i, key in ipairs(KEYS) do
    fixed_window_count(key, tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i]))
end
return {0, 0}
