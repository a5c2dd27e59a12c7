"""A stand-in for Concur's travel APIs, for local work, tests and benchmarks (`concur-postback simulate`).

Serves a trip, a travel profile (v1 and v2) and a form of payment for any token, built from Concur's
documented examples (the trip id and login id filled in), with a configurable latency. Also:

* a seeded, reproducible company of generated travellers and their trips (``company``), listed by
  profile summaries (`GET /api/travelprofile/v2.0/summary?LastModifiedDate=…&Page=&ItemsPerPage=`,
  v1: `GET /api/travelprofile/v1.0/profile?LastModifiedDate=…`) and trip summaries
  (`GET /api/travel/trip/v1.1/?lastModifiedDate=…&userid_type=login&userid_value=ALL&includeMetadata=true
  &ItemsPerPage=&Page=`), paged as documented (``api``, its documents built in ``documents``);
* the notification subscription calls (`POST /api/travelprofile/v1.0/subscribe?type=…`, the
  `/api/user/v1.0/…` and `/api/company/v1.0/…` forms, and `…/unsubscribe`), recorded and listed at
  `GET /_simulator/subscriptions`;
* Concur's bad days, scripted over HTTP (``faults``): `POST /_simulator/faults` with
  `{"match": "<substring of path or token>", "status": 503, "times": 2, "retry_after": "1",
  "delay_ms": 0}` (status 0: delay, then answer normally; `"seconds": 180` instead of `times`: every
  matching request for that long); `GET /_simulator/requests` lists what was asked (tokens masked to
  the last four);
* a load generator posting notifications to a postback URL the way Concur does (``load``,
  `simulate fire`).
"""
