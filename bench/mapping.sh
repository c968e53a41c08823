#!/usr/bin/env bash
# Mapping throughput: 1,000,000 JSONL records through bench/mapping.yaml on one core.
# Prints records/s and peak memory; also times `etl validate` of all shipped pipelines.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000000}
mkdir -p bench/data
if [ ! -s bench/data/contacts-1m.jsonl ] || [ "$(wc -l < bench/data/contacts-1m.jsonl)" -ne "$N" ]; then
  python3 - "$N" > bench/data/contacts-1m.jsonl <<'PY'
import json, sys, random
random.seed(1)
n = int(sys.argv[1])
names = ["Иван", "Мария", "Олег", "Анна", "Пётр"]
last = ["Петров", "Сидорова", "Иванов", "Зарудная", "Свеклов"]
fmt = ["8 (926) {a}-{b}-{c}", "+7 926 {a}{b}{c}", "926{a}{b}{c}"]
for i in range(1, n + 1):
    a, b, c = random.randint(100, 999), random.randint(10, 99), random.randint(10, 99)
    rec = {"ID": str(i), "NAME": random.choice(names), "LAST_NAME": random.choice(last),
           "PHONE": [{"ID": str(i), "VALUE_TYPE": "WORK", "VALUE": random.choice(fmt).format(a=a, b=b, c=c), "TYPE_ID": "PHONE"}],
           "EMAIL": [{"VALUE": f"user{i}@example.com"}], "BIRTHDATE": "2009-11-29T03:00:00+03:00",
           "PRODUCTS": [404, 410] if i % 2 else [999], "OPPORTUNITY": str(1000 + i % 5000)}
    print(json.dumps(rec, ensure_ascii=False))
PY
fi
cargo build --release --quiet
STATE=$(mktemp -d)/state.db
start=$(date +%s.%N)
/usr/bin/time -v taskset -c 0 target/release/etl run bench/mapping.yaml --state "$STATE" --no-progress > /tmp/etl-bench-mapping.out 2> /tmp/etl-bench-mapping.time
end=$(date +%s.%N)
tail -1 /tmp/etl-bench-mapping.out
secs=$(echo "$end - $start" | bc)
echo "records: $N  wall: ${secs}s  rate: $(echo "$N / $secs" | bc) records/s"
grep -E "Maximum resident" /tmp/etl-bench-mapping.time
# validate all shipped pipelines
export B24_WEBHOOK_URL=http://127.0.0.1:9/rest/1/fakecode123/ OTMECHALKA_URL=http://127.0.0.1:9 OTMECHALKA_TOKEN=fake-token-1 \
  COMAGIC_DATA_API_URL=http://127.0.0.1:9 COMAGIC_ACCESS_TOKEN=fake-token-1 COMAGIC_API_URL=http://127.0.0.1:9 \
  COMAGIC_LOGIN=fake COMAGIC_PASSWORD=fake-pass-1 ORDERS_API_URL=http://127.0.0.1:9 ORDERS_API_TOKEN=fake-token-1 \
  SMTP_URL=smtp://127.0.0.1:9 REPORT_FROM=reports@example.com REPORT_OUTPUT_DIR=/tmp
start=$(date +%s%N)
target/release/etl validate pipelines/*.yaml > /dev/null
end=$(date +%s%N)
echo "etl validate pipelines/*.yaml: $(( (end - start) / 1000000 )) ms"
