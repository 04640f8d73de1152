-- Give back an attempt counted by login_rate_count in ARGV[1] (its bucket), while that
-- bucket is still there (never creates a key or a bucket).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
    redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
end
return 0
