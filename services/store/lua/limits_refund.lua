--! uses: fixed_window
-- Give back each counter's cost (ARGV, per key) while its window lasts.
for i, key in ipairs(KEYS) do fixed_window_refund(key, tonumber(ARGV[i])) end
return 0
