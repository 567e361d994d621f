-- wrk script: POST /v1/verify with a different pre-minted token per request.
-- Each wrk thread takes every Nth line of tokens.txt. Optional pacing:
-- WRK_DELAY_MS, the mean pause before each request of a connection, drawn
-- from an exponential distribution so that connections do not fall into
-- step and arrive in bursts (a fixed pause keeps them in lock-step).
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  tokens = {}
  local n, mine = 0, 0
  local total = tonumber(os.getenv("WRK_THREADS") or "1")
  for line in io.lines(os.getenv("TOKENS")) do
    if n % total == id then
      mine = mine + 1
      tokens[mine] = line
    end
    n = n + 1
  end
  next_token = 1
  delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "0")
  math.randomseed(7919 * (id + 1))
  secret = os.getenv("SECRET")
  -- ACCOUNTS: name one of this many accounts (in ACCOUNTS / 25
  -- organisations) per request, so the history reads and writes.
  accounts = tonumber(os.getenv("ACCOUNTS") or "0")
end

-- Answers that are not an accepted token: a load test must time
-- verifications, not rejections (an expired token is cheaper).
rejected = 0

function response(status, headers, body)
  if status == 200 and not string.find(body, '"success":true', 1, true) then
    rejected = rejected + 1
  end
end

function request()
  local token = tokens[next_token]
  next_token = next_token + 1
  if token == nil then token = "exhausted" end
  local who = ""
  if accounts > 0 then
    local account = (next_token * 7919 + id) % accounts
    who = ",\"account\":\"user-" .. account .. "\",\"organization\":\"org-" .. (account % math.max(1, math.floor(accounts / 25))) .. "\""
  end
  local body = '{"token":"' .. token .. '","remote_ip":"127.0.0.1","accept_language":"en-US,en;q=0.9"' .. who .. '}'
  return wrk.format("POST", "/v1/verify", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. secret,
  }, body)
end

function delay()
  if delay_ms <= 0 then return 0 end
  return math.floor(-delay_ms * math.log(1 - math.random()) + 0.5)
end

function done(summary, latency, requests)
  local refused = 0
  for _, thread in ipairs(threads) do
    refused = refused + (thread:get("rejected") or 0)
  end
  io.write(string.format("non-2xx or socket errors: %d\n", summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout + refused))
  io.write(string.format("tokens not accepted: %d\n", refused))
end
