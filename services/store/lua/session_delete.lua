-- End one session. KEYS: session, index. ARGV: digest.
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 0
