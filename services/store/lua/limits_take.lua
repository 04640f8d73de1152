--! uses: fixed_window
-- Take one event on every counter, or none. KEYS: counters in one hash slot; ARGV: limit,
-- window (s) and cost per key. Every counter is checked first and only then counted on all,
-- so a refusal changes nothing. An event costing more than what is left is refused (it does
-- not use up the rest).
-- Returns {0, 0} when taken, else {index of the refusing key (1-based), ms until it resets}.
local refusal = fixed_windows_refusal(KEYS, ARGV)
if refusal then return refusal end
fixed_windows_count(KEYS, ARGV)
return {0, 0}
