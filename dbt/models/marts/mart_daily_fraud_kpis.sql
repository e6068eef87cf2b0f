-- Fraud KPIs at grain day x channel x country x merchant_category x hour (UTC). Every coarser view
-- (per day, per channel, per hour, ...) is a sum over this grain; rates must be recomputed from
-- the summed counts, never averaged.
select
    event_date,
    channel,
    country,
    merchant_category,
    hour,
    count(*) as transaction_count,
    sum(amount_eur) as amount_eur,
    {{ count_if("is_fraud = 1") }} as fraud_count,
    sum(case when is_fraud = 1 then amount_eur else 0 end) as fraud_amount_eur,
    {{ safe_ratio(count_if("is_fraud = 1"), "count(*)") }} as fraud_rate,
    {{ count_if("label_status = 'matured'") }} as matured_count
from {{ ref('fct_transactions') }}
group by event_date, channel, country, merchant_category, hour
