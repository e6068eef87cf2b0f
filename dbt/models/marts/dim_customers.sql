-- One row per pseudonymised customer; home_country is the country they transact in most.
with transactions as (
    select * from {{ ref('fct_transactions') }}
),

home as (
    {{ most_frequent(ref('fct_transactions'), 'customer_key', 'country') }}
)

select
    transactions.customer_key,
    home.country as home_country,
    min(transactions.event_time) as first_seen_at,
    max(transactions.event_time) as last_seen_at,
    count(*) as transaction_count,
    count(distinct transactions.card_key) as card_count
from transactions
join home on home.customer_key = transactions.customer_key
group by transactions.customer_key, home.country
