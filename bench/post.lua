-- wrk script: POST one agreement per request, a new customer tenant each time, with the same
-- headers and body mca-attest sends, so the simulator does the same work per request. The body
-- is built in Lua for every request, which costs wrk itself much of its speed: bench/run.py also
-- measures bench/post_fixed.lua (one request built once) and compares mca-attest with the
-- faster of the two. No response() hook: it would run Lua for every answer too (wrk counts
-- non-2xx answers on its own).
local counter = 0

local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Authorization"] = "Bearer bench"
  wrk.headers["Accept"] = "application/json"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Locale"] = "en-US"
end

local function guid(n)
  return string.format("%08x-0000-4000-8000-%012x", thread_id, n)
end

function request()
  counter = counter + 1
  local id = guid(counter)
  local body = '{"primaryContact":{"firstName":"First' .. counter .. '","lastName":"Last' .. counter ..
    '","email":"user' .. counter .. '@contoso.com","phoneNumber":"+1 425 555 0100"},' ..
    '"templateId":"117a77b0-9360-443b-8795-c6dedc750cf9","dateAgreed":"2024-05-01T00:00:00Z",' ..
    '"type":"MicrosoftCustomerAgreement"}'
  wrk.headers["MS-RequestId"] = string.format("%08x-1111-4000-8000-%012x", thread_id, counter)
  wrk.headers["MS-CorrelationId"] = string.format("%08x-2222-4000-8000-%012x", thread_id, counter)
  return wrk.format("POST", "/v1/customers/" .. id .. "/agreements", nil, body)
end
