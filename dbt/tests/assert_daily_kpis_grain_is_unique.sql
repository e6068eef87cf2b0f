-- The KPI mart has exactly one row per day x channel x country x merchant_category x hour.
select event_date, channel, country, merchant_category, hour, count(*) as rows_at_grain
from {{ ref('mart_daily_fraud_kpis') }}
group by event_date, channel, country, merchant_category, hour
having count(*) > 1
