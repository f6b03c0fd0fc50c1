-- wrk script: the same POST as post.lua (headers and body mca-attest sends), built once and sent
-- as is: one customer tenant, one body and one MS-RequestId for every request. The simulator
-- answers a repeated MS-RequestId with the agreement it created the first time (201), so every
-- answer is a success and wrk sends at its full speed (no Lua runs per request). Pass the
-- agreement URL of the tenant below on the command line, e.g.
--   wrk -t 2 -c 64 -d 10s -s bench/post_fixed.lua \
--     http://127.0.0.1:PORT/v1/customers/00000000-0000-4000-8000-000000000001/agreements
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer bench"
wrk.headers["Accept"] = "application/json"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Locale"] = "en-US"
wrk.headers["MS-RequestId"] = "00000000-1111-4000-8000-000000000001"
wrk.headers["MS-CorrelationId"] = "00000000-2222-4000-8000-000000000001"
wrk.body = '{"primaryContact":{"firstName":"First1","lastName":"Last1",' ..
  '"email":"user1@contoso.com","phoneNumber":"+1 425 555 0100"},' ..
  '"templateId":"117a77b0-9360-443b-8795-c6dedc750cf9","dateAgreed":"2024-05-01T00:00:00Z",' ..
  '"type":"MicrosoftCustomerAgreement"}'
