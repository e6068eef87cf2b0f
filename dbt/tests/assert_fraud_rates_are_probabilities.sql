-- A fraud rate outside [0, 1] means a broken numerator or denominator.
select event_date, channel, country, merchant_category, hour, fraud_rate
from {{ ref('mart_daily_fraud_kpis') }}
where fraud_rate < 0 or fraud_rate > 1 or fraud_count > transaction_count
