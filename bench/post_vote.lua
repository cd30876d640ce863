-- wrk script: POST one vote per request with a unique vote_id (per thread and counter).
local counter = 0
local thread_id = 0
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
function init(args)
  thread_id = id
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("PODIUM_DEV_API_KEY")
if key and key ~= "" then wrk.headers["X-API-Key"] = key end
local models = {"atlas-7b", "boreal-13b", "cirrus-34b", "dynamo-70b"}
function request()
  counter = counter + 1
  local a = models[(counter % 4) + 1]
  local b = models[((counter + 1) % 4) + 1]
  local body = string.format(
    '{"vote_id":"w%d-%d-%d","arena":"text","model_a":"%s","model_b":"%s","winner":"model_a"}',
    thread_id, counter, os.time(), a, b)
  return wrk.format(nil, nil, nil, body)
end
